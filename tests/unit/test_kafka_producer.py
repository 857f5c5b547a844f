"""EventProducer over a fake client: reports, back-pressure, nothing dropped silently."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from adapters.kafka.config import producer_config
from adapters.kafka.errors import KafkaErrorInfo, ProduceError, ProducerQueueFullError
from adapters.kafka.headers import EventHeaders, parse_headers
from adapters.kafka.producer import UNCONFIRMED_DELIVERY, DeliveryReport, EventProducer

Callback = Callable[[KafkaError | None, Message], None]


class FakeProducer:
    """Queues produced messages; ``poll`` acks (or fails) them in order."""

    def __init__(self, *, full_for: int = 0, fail_with: KafkaError | None = None) -> None:
        self.full_for = full_for
        self.fail_with = fail_with
        self.pending: list[tuple[dict[str, Any], Callback]] = []
        self.produced: list[dict[str, Any]] = []
        self.polls = 0
        self.offsets: dict[tuple[str, int], int] = {}
        self.raise_on_produce: Exception | None = None
        #: Ack without an offset (librdkafka's invalid offset), as seen on a new topic.
        self.ack_without_offset = False

    def produce(self, topic: str, **kwargs: Any) -> None:
        if self.raise_on_produce is not None:
            raise self.raise_on_produce
        if self.full_for > 0:
            self.full_for -= 1
            raise BufferError("Local: Queue full")
        message = {"topic": topic, **kwargs}
        self.produced.append(message)
        self.pending.append((message, kwargs["on_delivery"]))

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        served = 0
        while self.pending:
            message, callback = self.pending.pop(0)
            partition = message.get("partition", 0)
            offset = self.offsets.get((message["topic"], partition), 0)
            self.offsets[(message["topic"], partition)] = offset + 1
            if self.ack_without_offset:
                callback(None, Message(topic=message["topic"], partition=partition, offset=-1001))
            elif self.fail_with is None:
                callback(None, Message(topic=message["topic"], partition=partition, offset=offset))
            else:
                callback(
                    self.fail_with, Message(topic=message["topic"], partition=-1, offset=-1001)
                )
            served += 1
        return served

    def flush(self, timeout: float = 0) -> int:
        self.poll(timeout)
        return len(self.pending)

    def __len__(self) -> int:
        return len(self.pending)


def make(fake: FakeProducer, **kwargs: Any) -> EventProducer:
    return EventProducer(client=fake, **kwargs)  # type: ignore[arg-type]


def test_delivery_report_carries_opaque_and_key() -> None:
    fake = FakeProducer()
    reports: list[DeliveryReport] = []
    producer = make(fake)
    producer.produce("t", "order-1", b"v1", on_delivery=reports.append, opaque=41)
    producer.produce("t", b"order-2", b"v2", on_delivery=reports.append, opaque=42)
    assert producer.in_flight == 2
    assert producer.flush(1.0) == 0
    assert reports == [
        DeliveryReport("t", 0, 0, None, 41, b"order-1"),
        DeliveryReport("t", 0, 1, None, 42, b"order-2"),
    ]
    assert [r.opaque for r in reports] == [41, 42]
    assert all(r.ok for r in reports)
    assert producer.in_flight == 0


def test_headers_are_encoded() -> None:
    fake = FakeProducer()
    producer = make(fake)
    headers = EventHeaders(
        event_id=uuid.uuid4(),
        event_type="PushRequested",
        idempotency_key="k",
        org_id=uuid.uuid4(),
        attempt=0,
        occurred_at=datetime.now(UTC),
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    producer.produce("t", None, b"v", headers)
    producer.produce("t", None, b"v", {"a": "1", "b": b"2"})
    producer.produce("t", None, b"v", [("a", "1")])
    producer.produce("t", None, b"v")
    first, second, third, fourth = fake.produced
    assert parse_headers(first["headers"]).event_id == headers.event_id
    assert second["headers"] == [("a", b"1"), ("b", b"2")]
    assert third["headers"] == [("a", b"1")]
    assert "headers" not in fourth


def test_default_callback_used_when_none_given() -> None:
    fake = FakeProducer()
    seen: list[DeliveryReport] = []
    producer = make(fake, on_delivery=seen.append)
    producer.produce("t", "k", b"v", opaque="row-7")
    producer.poll(0)
    assert [r.opaque for r in seen] == ["row-7"]


def test_queue_full_waits_by_polling_then_succeeds() -> None:
    fake = FakeProducer(full_for=3)
    producer = make(fake, queue_full_timeout=5, queue_full_poll=0)
    producer.produce("t", "k", b"v")
    assert len(fake.produced) == 1
    assert fake.polls == 3  # one poll per BufferError, serving reports to make room
    assert producer.in_flight == 1


def test_queue_full_is_bounded_and_loud() -> None:
    fake = FakeProducer(full_for=10**9)
    producer = make(fake, queue_full_timeout=0.05, queue_full_poll=0.001)
    with pytest.raises(ProducerQueueFullError) as info:
        producer.produce("t", "k", b"v")
    assert info.value.info.code == KafkaError._QUEUE_FULL
    assert info.value.info.retriable
    assert fake.produced == []
    assert producer.in_flight == 0


def test_other_refusals_raise_produce_error() -> None:
    fake = FakeProducer()
    fake.raise_on_produce = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too big"))
    producer = make(fake)
    with pytest.raises(ProduceError, match="MSG_SIZE_TOO_LARGE") as info:
        producer.produce("t", "k", b"v" * 10)
    assert not isinstance(info.value, ProducerQueueFullError)
    assert producer.in_flight == 0


def test_failed_delivery_reaches_the_callback() -> None:
    fake = FakeProducer(fail_with=KafkaError(KafkaError._MSG_TIMED_OUT, "timed out"))
    reports: list[DeliveryReport] = []
    producer = make(fake)
    producer.produce("t", "k", b"v", on_delivery=reports.append, opaque=1)
    producer.flush(1)
    (report,) = reports
    assert not report.ok
    assert report.error == KafkaErrorInfo(KafkaError._MSG_TIMED_OUT, "_MSG_TIMED_OUT", "timed out")
    assert (report.partition, report.offset, report.opaque) == (-1, -1, 1)


def test_an_ack_without_an_offset_is_not_a_delivery() -> None:
    # Seen on a real broker right after topic creation: no error, no offset, no record.
    fake = FakeProducer()
    fake.ack_without_offset = True
    reports: list[DeliveryReport] = []
    producer = make(fake)
    producer.produce("t", "k", b"v", on_delivery=reports.append, opaque=7)
    producer.flush(1)
    (report,) = reports
    assert not report.ok
    assert report.error == UNCONFIRMED_DELIVERY
    assert report.error.retriable
    assert (report.offset, report.opaque) == (-1, 7)


def test_failed_delivery_without_callback_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeProducer(fail_with=KafkaError(KafkaError._MSG_TIMED_OUT, "timed out"))
    producer = make(fake)
    with caplog.at_level(logging.ERROR, "adapters.kafka.producer"):
        producer.produce("t", "k", b"v")
        producer.flush(1)
    assert producer.failed_without_callback == 1
    assert "no callback" in caplog.text


def test_callback_exceptions_propagate() -> None:
    fake = FakeProducer()
    producer = make(fake)

    def boom(report: DeliveryReport) -> None:
        raise RuntimeError("callback failed")

    producer.produce("t", "k", b"v", on_delivery=boom)
    with pytest.raises(RuntimeError, match="callback failed"):
        producer.poll(0)


def test_close_reports_undelivered(caplog: pytest.LogCaptureFixture) -> None:
    class Stuck(FakeProducer):
        def flush(self, timeout: float = 0) -> int:
            return len(self.pending)

    fake = Stuck()
    producer = make(fake)
    producer.produce("t", "k", b"v")
    with caplog.at_level(logging.ERROR, "adapters.kafka.producer"):
        assert producer.close(0.01) == 1
    assert "not yet acknowledged" in caplog.text


def test_fatal_error_is_exposed_from_the_config_reporter() -> None:
    config = producer_config("127.0.0.1:1")
    config.pop("bootstrap.servers")
    producer = EventProducer(config)
    assert producer.fatal_error is None
    config["error_cb"](KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "gap", fatal=True))
    assert producer.fatal_error is not None
    assert producer.fatal_error.name == "OUT_OF_ORDER_SEQUENCE_NUMBER"


def test_needs_config_or_client() -> None:
    with pytest.raises(ValueError, match="config"):
        EventProducer()
