"""KafkaEventSink (the relay's lean producer path) over a fake confluent-kafka client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from adapters.kafka.errors import KafkaErrorInfo
from adapters.kafka.event_sink import KafkaEventSink
from adapters.kafka.logs import ErrorReporter
from domain.outbox_ports import SinkBroken, SinkRejected


@dataclass
class FakeMessage:
    offset_value: int

    def offset(self) -> int:
        return self.offset_value


@dataclass
class FakeClient:
    """``confluent_kafka.Producer`` as far as the sink uses it."""

    full_for: int = 0
    refuse_with: BaseException | None = None
    produced: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[Callable[[Any, Any], None]] = field(default_factory=list)
    polls: list[float] = field(default_factory=list)
    flushes: list[float] = field(default_factory=list)

    def produce(self, topic: str, value: bytes, key: str, **kwargs: Any) -> None:
        if self.refuse_with is not None:
            raise self.refuse_with
        if self.full_for > 0:
            self.full_for -= 1
            raise BufferError("Local: Queue full")
        if not isinstance(kwargs["headers"], dict):
            raise TypeError("expected headers to be a dict or list")
        self.produced.append({"topic": topic, "value": value, "key": key, **kwargs})
        self.callbacks.append(kwargs["on_delivery"])

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        return 0

    def flush(self, timeout: float) -> int:
        self.flushes.append(timeout)
        return 0

    def __len__(self) -> int:
        return len(self.callbacks)


def sink_with(client: FakeClient, reporter: ErrorReporter | None = None) -> KafkaEventSink:
    config: dict[str, Any] = {"error_cb": reporter or ErrorReporter()}
    return KafkaEventSink(config, client=client, queue_full_timeout=1.0, queue_full_poll=0.0)


def test_acknowledged_messages_come_back_as_plain_ids() -> None:
    client = FakeClient()
    sink = sink_with(client)

    for token in (7, 8, 9):
        sink.send("t", "key-a", b"v", {"event_id": "e"}, token)
    assert [m["key"] for m in client.produced] == ["key-a"] * 3
    assert client.produced[0]["headers"] == {"event_id": "e"}
    for callback in client.callbacks:
        callback(None, FakeMessage(42))

    reports = sink.poll(0)
    assert reports.acked == [7, 8, 9]
    assert reports.failed == []
    assert sink.poll(0).acked == []  # taken once


def test_failed_and_offsetless_deliveries_are_failures() -> None:
    client = FakeClient()
    sink = sink_with(client)
    sink.send("t", "k", b"v", {}, 1)
    sink.send("t", "k", b"v", {}, 2)
    client.callbacks[0](KafkaError(KafkaError._MSG_TIMED_OUT), FakeMessage(-1))
    # "Delivered" without an offset: nothing proves the broker stored it.
    client.callbacks[1](None, FakeMessage(-1))

    reports = sink.flush(1.0)

    assert reports.acked == []
    assert [(d.token, d.ok) for d in reports.failed] == [(1, False), (2, False)]
    assert "MSG_TIMED_OUT" in (reports.failed[0].error or "")
    assert reports.failed[1].error == "UNCONFIRMED_DELIVERY"


def test_headers_the_client_cannot_take_are_a_refusal_not_a_crash() -> None:
    sink = sink_with(FakeClient())

    with pytest.raises(SinkRejected, match="TypeError"):
        sink.send("t", "k", b"v", ["not", "pairs"], 1)  # type: ignore[arg-type]


def test_header_values_that_are_not_text_are_sent_as_text() -> None:
    client = FakeClient()

    def strict(topic: str, value: bytes, key: str, **kwargs: Any) -> None:
        if not all(isinstance(v, str) for v in kwargs["headers"].values()):
            raise TypeError("expected header value to be None, binary, or unicode string")
        FakeClient.produce(client, topic, value, key, **kwargs)

    client.produce = strict  # type: ignore[method-assign]
    sink = sink_with(client)

    sink.send("t", "k", b"v", {"attempt": 1, "event_id": "e"}, 1)  # type: ignore[dict-item]

    assert client.produced[0]["headers"] == {"attempt": "1", "event_id": "e"}


def test_full_local_queue_serves_reports_then_sends() -> None:
    client = FakeClient(full_for=2)
    sink = sink_with(client)

    sink.send("t", "k", b"v", {}, 5)

    assert len(client.produced) == 1
    assert len(client.polls) == 2


def test_queue_full_for_too_long_is_a_refusal() -> None:
    client = FakeClient(full_for=10**9)
    sink = KafkaEventSink(
        {"error_cb": ErrorReporter()}, client=client, queue_full_timeout=0.0, queue_full_poll=0.0
    )

    with pytest.raises(SinkRejected, match="queue still full"):
        sink.send("t", "k", b"v", {}, 5)


def test_client_refusal_is_rejected_and_fatal_state_breaks_the_sink() -> None:
    reporter = ErrorReporter()
    client = FakeClient(refuse_with=KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)))
    sink = sink_with(client, reporter)

    with pytest.raises(SinkRejected, match="MSG_SIZE_TOO_LARGE"):
        sink.send("t", "k", b"v", {}, 1)

    reporter.report(
        KafkaErrorInfo(KafkaError._FATAL, "_FATAL", "out of order sequence", fatal=True)
    )
    with pytest.raises(SinkBroken):
        sink.send("t", "k", b"v", {}, 2)
    with pytest.raises(SinkBroken):
        sink.poll(0)


def test_a_wait_for_reports_flushes_so_lingering_messages_go_at_once() -> None:
    # A non-blocking poll leaves linger.ms to batch a backlog; a wait means the relay
    # has nothing else to do, and flush() ignores linger.ms while it runs.
    client = FakeClient()
    sink = sink_with(client)
    sink.poll(0)
    sink.poll(0.002)
    assert (client.polls, client.flushes) == ([0], [0.002])
