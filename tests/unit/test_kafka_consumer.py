"""EventConsumer over a fake client: typed messages, error events, offsets, callbacks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from adapters.kafka.consumer import ConsumedMessage, EventConsumer, Partition
from adapters.kafka.errors import ConsumerError


class FakeConsumer:
    def __init__(self) -> None:
        self.batches: list[list[Message]] = []
        self.subscribed: tuple[list[str], dict[str, Any]] | None = None
        self.stored: list[TopicPartition] = []
        self.store_error: KafkaException | None = None
        self.commit_result: list[TopicPartition] | KafkaException = []
        self.commits: list[bool] = []
        self.paused: list[TopicPartition] = []
        self.resumed: list[TopicPartition] = []
        self.closed = 0

    def subscribe(self, topics: list[str], **kwargs: Any) -> None:
        self.subscribed = (topics, kwargs)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        return self.batches.pop(0)[:num_messages] if self.batches else []

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused += partitions

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resumed += partitions

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", 0), TopicPartition("t", 1)]

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        if self.store_error is not None:
            raise self.store_error
        self.stored += offsets

    def commit(self, asynchronous: bool = True) -> list[TopicPartition] | None:
        self.commits.append(asynchronous)
        if isinstance(self.commit_result, KafkaException):
            raise self.commit_result
        return None if asynchronous else self.commit_result

    def committed(
        self, partitions: list[TopicPartition], timeout: float = -1
    ) -> list[TopicPartition]:
        return [
            TopicPartition(p.topic, p.partition, 7 if p.partition == 0 else -1001)
            for p in partitions
        ]

    def close(self) -> None:
        self.closed += 1


def record(offset: int, partition: int = 0, **kwargs: Any) -> Message:
    return Message(
        topic="t",
        partition=partition,
        offset=offset,
        key=b"k",
        value=b"v%d" % offset,
        headers=kwargs.pop("headers", [("event_id", b"e"), ("dup", b"1"), ("dup", b"2")]),
        timestamp=kwargs.pop("timestamp", (1, 1_700_000_000_123)),
        leader_epoch=kwargs.pop("leader_epoch", 4),
    )


@pytest.fixture
def fake() -> FakeConsumer:
    return FakeConsumer()


@pytest.fixture
def consumer(fake: FakeConsumer) -> EventConsumer:
    return EventConsumer(client=fake)  # type: ignore[arg-type]


def test_messages_become_typed_views(fake: FakeConsumer, consumer: EventConsumer) -> None:
    fake.batches.append([record(5)])
    (msg,) = consumer.poll_batch(10, 0.1)
    assert msg == ConsumedMessage(
        topic="t",
        partition=0,
        offset=5,
        key=b"k",
        value=b"v5",
        headers={"event_id": b"e", "dup": b"2"},
        timestamp=datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC),
        header_items=(("event_id", b"e"), ("dup", b"1"), ("dup", b"2")),
        leader_epoch=4,
    )
    assert msg.topic_partition == Partition("t", 0)
    assert msg.next_offset == 6


def test_no_timestamp_and_no_headers(fake: FakeConsumer, consumer: EventConsumer) -> None:
    fake.batches.append([record(0, headers=None, timestamp=(0, -1))])
    (msg,) = consumer.poll_batch(1, 0.1)
    assert msg.timestamp is None
    assert msg.headers == {}


def test_error_events_are_reported_and_skipped(
    fake: FakeConsumer, consumer: EventConsumer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.batches.append(
        [
            record(1),
            Message(error=KafkaError(KafkaError._PARTITION_EOF)),
            Message(error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "no such topic")),
            Message(error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "no such topic")),
            record(2),
        ]
    )
    with caplog.at_level(logging.WARNING):
        messages = consumer.poll_batch(10, 0.1)
    assert [m.offset for m in messages] == [1, 2]
    # Reported once, not once per event.
    assert caplog.text.count("UNKNOWN_TOPIC_OR_PART") == 1


def test_fatal_error_event_raises(fake: FakeConsumer, consumer: EventConsumer) -> None:
    fake.batches.append(
        [Message(error=KafkaError(KafkaError.FENCED_INSTANCE_ID, "fenced", fatal=True))]
    )
    with pytest.raises(ConsumerError, match="FENCED_INSTANCE_ID"):
        consumer.poll_batch(10, 0.1)


def test_poll_batch_validates(consumer: EventConsumer) -> None:
    with pytest.raises(ValueError, match="max_messages"):
        consumer.poll_batch(0)


def test_store_offsets_keeps_the_highest_per_partition(
    fake: FakeConsumer, consumer: EventConsumer
) -> None:
    fake.batches.append([record(3), record(9, partition=1), record(4), record(8, partition=1)])
    messages = consumer.poll_batch(10, 0.1)
    assert consumer.store_offsets(messages)
    stored = {(tp.topic, tp.partition): (tp.offset, tp.leader_epoch) for tp in fake.stored}
    # Next offset (Kafka convention), with the leader epoch for truncation detection.
    assert stored == {("t", 0): (5, 4), ("t", 1): (10, 4)}
    assert consumer.store_offsets([])


@pytest.mark.parametrize("code", [KafkaError._STATE, KafkaError._UNKNOWN_PARTITION])
def test_store_offset_on_a_lost_partition_returns_false(
    fake: FakeConsumer, consumer: EventConsumer, code: int
) -> None:
    fake.batches.append([record(1)])
    (msg,) = consumer.poll_batch(1, 0.1)
    fake.store_error = KafkaException(KafkaError(code))
    assert consumer.store_offset(msg) is False


def test_store_offset_other_errors_raise(fake: FakeConsumer, consumer: EventConsumer) -> None:
    fake.batches.append([record(1)])
    (msg,) = consumer.poll_batch(1, 0.1)
    fake.store_error = KafkaException(KafkaError(KafkaError._INVALID_ARG, "auto store on"))
    with pytest.raises(ConsumerError, match="store_offsets"):
        consumer.store_offset(msg)


def test_commit(fake: FakeConsumer, consumer: EventConsumer) -> None:
    fake.commit_result = [TopicPartition("t", 0, 5), TopicPartition("t", 1, -1001)]
    assert consumer.commit() == {Partition("t", 0): 5}
    assert consumer.commit(asynchronous=True) == {}
    assert fake.commits == [False, True]


def test_commit_with_nothing_stored_is_a_no_op(fake: FakeConsumer, consumer: EventConsumer) -> None:
    fake.commit_result = KafkaException(KafkaError(KafkaError._NO_OFFSET))
    assert consumer.commit() == {}


def test_commit_failure_raises(fake: FakeConsumer, consumer: EventConsumer) -> None:
    fake.commit_result = KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS, "rebalance"))
    with pytest.raises(ConsumerError, match="REBALANCE_IN_PROGRESS"):
        consumer.commit()


def test_committed(consumer: EventConsumer) -> None:
    assert consumer.committed([Partition("t", 0), Partition("t", 1)]) == {
        Partition("t", 0): 7,
        Partition("t", 1): None,
    }


def test_rebalance_callbacks_get_partitions(fake: FakeConsumer, consumer: EventConsumer) -> None:
    assigned: list[list[Partition]] = []
    consumer.subscribe(["a", "b"], on_assign=assigned.append)
    assert fake.subscribed is not None
    topics, callbacks = fake.subscribed
    assert topics == ["a", "b"]
    # Only the callbacks given are passed (the client refuses None).
    assert set(callbacks) == {"on_assign"}
    callbacks["on_assign"](object(), [TopicPartition("a", 2), TopicPartition("b", 0)])
    assert assigned == [[Partition("a", 2), Partition("b", 0)]]


def test_pause_resume_assignment_close(fake: FakeConsumer, consumer: EventConsumer) -> None:
    assert consumer.assignment() == [Partition("t", 0), Partition("t", 1)]
    consumer.pause([Partition("t", 1)])
    consumer.resume([Partition("t", 1)])
    assert [(tp.topic, tp.partition) for tp in fake.paused] == [("t", 1)]
    assert [(tp.topic, tp.partition) for tp in fake.resumed] == [("t", 1)]
    with consumer:
        pass
    consumer.close()
    assert fake.closed == 1


class ArrivingConsumer(FakeConsumer):
    """Records arrive only while a consume call blocks (``timeout > 0``), like a quiet topic."""

    def __init__(self, arriving: list[Message]) -> None:
        super().__init__()
        self.queued: list[Message] = []
        self.arriving = arriving
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        self.calls.append((num_messages, timeout))
        if timeout > 0:
            self.queued += self.arriving
            self.arriving = []
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken


def test_poll_batch_returns_on_the_first_record_and_takes_what_came_with_it() -> None:
    # librdkafka's batch consume would wait out the whole timeout for a partial
    # batch; poll_batch must block for one record only, then drain without waiting.
    fake = ArrivingConsumer([record(1), record(2), record(3)])
    consumer = EventConsumer(client=fake)  # type: ignore[arg-type]
    messages = consumer.poll_batch(10, 5.0)
    assert [m.offset for m in messages] == [1, 2, 3]
    assert fake.calls == [(10, 0), (1, 5.0), (9, 0)]


def test_poll_batch_does_not_block_when_records_are_queued() -> None:
    fake = ArrivingConsumer([])
    fake.queued = [record(7)]
    consumer = EventConsumer(client=fake)  # type: ignore[arg-type]
    assert [m.offset for m in consumer.poll_batch(10, 5.0)] == [7]
    assert fake.calls == [(10, 0)]
