"""EventProducer and EventConsumer against the real broker.

Every test uses its own topics and consumer group (uuid suffix) and deletes its
topics afterwards; waits are bounded deadline loops, never bare sleeps.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka.admin import AdminClient

from adapters.kafka.config import admin_config, consumer_config, producer_config
from adapters.kafka.consumer import ConsumedMessage, EventConsumer, Partition
from adapters.kafka.headers import EventHeaders, FailureInfo, parse_headers
from adapters.kafka.producer import DeliveryReport, EventProducer
from adapters.kafka.topics import ensure_topics

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


# --- helpers ------------------------------------------------------------------------------


class Topics:
    """Creates uniquely named topics for one test and deletes them at teardown."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient(admin_config(bootstrap))
        self.created: list[str] = []

    def new(self, partitions: int) -> str:
        name = f"it-kafka-{uuid.uuid4().hex[:12]}"
        ensure_topics(self.admin, [name], partitions, timeout=15)
        self.created.append(name)
        return name

    def delete(self) -> None:
        if self.created:
            for future in self.admin.delete_topics(self.created, operation_timeout=10).values():
                future.result()


@pytest.fixture
def topics(kafka_bootstrap_servers: str) -> Iterator[Topics]:
    made = Topics(kafka_bootstrap_servers)
    yield made
    made.delete()


@pytest.fixture
def producer(kafka_bootstrap_servers: str) -> Iterator[EventProducer]:
    made = EventProducer(producer_config(kafka_bootstrap_servers, client_id="it-producer"))
    yield made
    assert made.close(10) == 0


@pytest.fixture
def make_consumer(kafka_bootstrap_servers: str) -> Iterator[Callable[[str], EventConsumer]]:
    opened: list[EventConsumer] = []

    def make(group: str) -> EventConsumer:
        consumer = EventConsumer(
            consumer_config(
                kafka_bootstrap_servers,
                group_id=group,
                client_id="it-consumer",
                # Short session so a test's consumers never wait on a stale member.
                session_timeout_ms=6_000,
                max_poll_interval_ms=10_000,
            )
        )
        opened.append(consumer)
        return consumer

    yield make
    for consumer in opened:
        consumer.close()


def new_group() -> str:
    return f"it-group-{uuid.uuid4().hex[:12]}"


def consume_until(
    consumer: EventConsumer,
    done: Callable[[list[ConsumedMessage]], bool],
    timeout: float = 15.0,
) -> list[ConsumedMessage]:
    """Poll until ``done(received)`` holds; fail after ``timeout`` seconds."""
    received: list[ConsumedMessage] = []
    deadline = time.monotonic() + timeout
    while not done(received):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s; got {len(received)} message(s)")
        received += consumer.poll_batch(500, 0.2)
    return received


def wait_for_assignment(consumer: EventConsumer, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while len(consumer.assignment()) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"no assignment of {count} partition(s) within {timeout}s")
        assert consumer.poll_batch(1, 0.1) == [], "unexpected message while joining"


def murmur2(data: bytes) -> int:
    """Kafka's Java ``Utils.murmur2`` (seed 0x9747b28c), as an unsigned 32-bit value."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) // 4 * 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_murmur2_helper_matches_the_java_client() -> None:
    # Vectors from the Java partitioner with 1000 partitions (as used by kafka-python's tests).
    vectors = {b"": 681, b"a": 524, b"ab": 434, b"abc": 107, b"123456789": 566, b"\x00 ": 742}
    assert {k: java_partition(k, 1000) for k in vectors} == vectors


# --- produce and consume ------------------------------------------------------------------


def test_produce_with_headers_and_consume_back(
    topics: Topics, producer: EventProducer, make_consumer: Callable[[str], EventConsumer]
) -> None:
    topic = topics.new(3)
    now = datetime.now(UTC).replace(microsecond=0)
    plain = EventHeaders(
        event_id=uuid.uuid4(),
        event_type="PushRequested",
        idempotency_key="push:org:order:0",
        org_id=uuid.uuid4(),
        attempt=0,
        occurred_at=now,
        traceparent=TRACE,
    )
    retry = plain.with_failure(
        FailureInfo.new(
            original_topic=topic,
            original_partition=1,
            original_offset=0,
            error_class="ConnectorTransientError",
            error_message="ERP said: 503 «Service Unavailable» " + "é" * 2000,
            first_failure_at=now,
            due_at=now + timedelta(seconds=2),
        ),
        attempt=1,
    )
    reports: list[DeliveryReport] = []
    producer.produce(topic, "order-1", b"first", plain, reports.append, opaque="row-1")
    producer.produce(topic, "order-1", b"second", retry, reports.append, opaque="row-2")
    producer.produce(topic, None, None, None, reports.append, opaque="row-3")
    assert producer.flush(10) == 0
    # Reports of one partition come in order; across partitions in any order.
    assert sorted(str(r.opaque) for r in reports) == ["row-1", "row-2", "row-3"]
    assert all(r.ok and r.topic == topic and r.offset >= 0 for r in reports)
    reports.sort(key=lambda r: str(r.opaque))
    assert reports[0].partition == reports[1].partition == java_partition(b"order-1", 3)
    assert reports[1].offset == reports[0].offset + 1

    consumer = make_consumer(new_group())
    consumer.subscribe([topic])
    received = consume_until(consumer, lambda got: len(got) >= 3)
    by_value = {m.value: m for m in received}
    first, second, empty = by_value[b"first"], by_value[b"second"], by_value[None]
    assert parse_headers(first.header_items) == plain
    parsed_retry = parse_headers(second.headers)
    assert parsed_retry == retry
    assert parsed_retry.failure is not None
    assert len(parsed_retry.failure.error_message.encode()) <= 1024
    assert (first.key, first.partition, first.offset) == (
        b"order-1",
        reports[0].partition,
        reports[0].offset,
    )
    assert empty.key is None and empty.headers == {}
    assert first.timestamp is not None
    assert abs(first.timestamp - datetime.now(UTC)) < timedelta(minutes=1)


def test_per_key_order_across_1000_messages_on_6_partitions(
    topics: Topics, producer: EventProducer, make_consumer: Callable[[str], EventConsumer]
) -> None:
    topic = topics.new(6)
    keys = [f"draft-order-{uuid.uuid4()}".encode() for _ in range(37)]
    total = 1000
    reports: list[DeliveryReport] = []
    for n in range(total):
        key = keys[n % len(keys)]
        producer.produce(topic, key, f"{key.decode()}:{n}".encode(), None, reports.append, opaque=n)
        producer.poll(0)
    assert producer.flush(15) == 0
    assert len(reports) == total and all(r.ok for r in reports)

    # Broker side: per key, one partition (the Java client's) and offsets in produce order.
    acked: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    for report in sorted(reports, key=lambda r: r.opaque):  # type: ignore[arg-type,return-value]
        assert report.key is not None
        acked[report.key].append((report.partition, report.offset))
    for key, positions in acked.items():
        assert {p for p, _ in positions} == {java_partition(key, 6)}
        offsets = [o for _, o in positions]
        assert offsets == sorted(offsets)
    assert len({r.partition for r in reports}) > 1

    # Consumer side: every message once, each key's sequence in order.
    consumer = make_consumer(new_group())
    consumer.subscribe([topic])
    received = consume_until(consumer, lambda got: len(got) >= total, timeout=20)
    assert len(received) == total
    sequences: dict[bytes, list[int]] = defaultdict(list)
    for message in received:
        assert message.key is not None and message.value is not None
        sequences[message.key].append(int(message.value.rsplit(b":", 1)[1]))
    for key in keys:
        expected = list(range(keys.index(key), total, len(keys)))
        assert sequences[key] == expected


def test_missing_topic_is_not_auto_created(kafka_bootstrap_servers: str, topics: Topics) -> None:
    # The broker allows auto-creation; our producer must not trigger it (it would get
    # the broker's default of 1 partition instead of the configured layout).
    producer = EventProducer(
        producer_config(kafka_bootstrap_servers, client_id="it-missing", delivery_timeout_ms=2_000)
    )
    name = f"it-kafka-missing-{uuid.uuid4().hex[:12]}"
    reports: list[DeliveryReport] = []
    producer.produce(name, "k", b"v", None, reports.append)
    assert producer.flush(10) == 0
    (report,) = reports
    assert not report.ok
    assert report.error is not None
    assert report.error.name in {"_MSG_TIMED_OUT", "_UNKNOWN_TOPIC", "UNKNOWN_TOPIC_OR_PART"}
    assert name not in topics.admin.list_topics(timeout=10).topics


# --- offsets: stored only after the "DB commit" -------------------------------------------


def test_unstored_offset_is_redelivered_and_stored_offset_is_not(
    topics: Topics, producer: EventProducer, make_consumer: Callable[[str], EventConsumer]
) -> None:
    topic = topics.new(1)
    group = new_group()
    partition = Partition(topic, 0)

    def produce(value: bytes) -> None:
        producer.produce(topic, "order-1", value)
        assert producer.flush(10) == 0

    produce(b"m0")
    # A: receives m0 but "crashes before the DB commit": no store. Even an explicit
    # commit and a clean close (auto-commit on) must not commit m0.
    first = make_consumer(group)
    first.subscribe([topic])
    (m0,) = consume_until(first, lambda got: len(got) >= 1)
    assert (m0.value, m0.offset) == (b"m0", 0)
    assert first.commit() == {}
    first.close()

    # B: gets m0 again; stores and commits it.
    second = make_consumer(group)
    assert second.committed([partition]) == {partition: None}
    second.subscribe([topic])
    (again,) = consume_until(second, lambda got: len(got) >= 1)
    assert (again.value, again.offset) == (b"m0", 0)
    assert second.store_offset(again) is True
    assert second.commit() == {partition: 1}
    second.close()

    # C: m0 is not delivered again; the first record it sees is the new m1.
    produce(b"m1")
    third = make_consumer(group)
    assert third.committed([partition]) == {partition: 1}
    third.subscribe([topic])
    (m1,) = consume_until(third, lambda got: len(got) >= 1)
    assert (m1.value, m1.offset) == (b"m1", 1)
    # Stored but not explicitly committed: close() commits what was stored.
    assert third.store_offset(m1) is True
    third.close()

    produce(b"m2")
    fourth = make_consumer(group)
    assert fourth.committed([partition]) == {partition: 2}
    fourth.subscribe([topic])
    (m2,) = consume_until(fourth, lambda got: len(got) >= 1)
    assert (m2.value, m2.offset) == (b"m2", 2)


def test_store_offset_after_the_partition_moved_returns_false(
    topics: Topics, producer: EventProducer, make_consumer: Callable[[str], EventConsumer]
) -> None:
    topic = topics.new(2)
    for partition in (0, 1):
        producer.produce(topic, None, b"p%d" % partition, partition=partition)
    assert producer.flush(10) == 0
    group = new_group()
    revoked: list[Partition] = []
    first = make_consumer(group)
    first.subscribe([topic], on_revoke=revoked.extend)
    held = consume_until(first, lambda got: len(got) >= 2)

    # A second member joins: cooperative-sticky moves exactly one partition to it.
    second = make_consumer(group)
    second.subscribe([topic])
    deadline = time.monotonic() + 15
    while not (len(first.assignment()) == 1 and len(second.assignment()) == 1):
        if time.monotonic() > deadline:
            pytest.fail("cooperative rebalance did not complete in 15s")
        first.poll_batch(10, 0.1)
        second.poll_batch(10, 0.1)
    (kept,) = first.assignment()
    assert revoked == [p for p in (Partition(topic, 0), Partition(topic, 1)) if p != kept]
    by_partition = {m.topic_partition: m for m in held}
    assert first.store_offset(by_partition[kept]) is True
    assert first.store_offset(by_partition[revoked[0]]) is False


def test_pause_and_resume_an_assigned_partition(
    topics: Topics, producer: EventProducer, make_consumer: Callable[[str], EventConsumer]
) -> None:
    topic = topics.new(2)
    paused, running = Partition(topic, 0), Partition(topic, 1)
    consumer = make_consumer(new_group())
    consumer.subscribe([topic])
    wait_for_assignment(consumer, 2)
    consumer.pause([paused])

    for n in range(5):
        producer.produce(topic, None, b"paused-%d" % n, partition=paused.partition)
        producer.produce(topic, None, b"running-%d" % n, partition=running.partition)
    assert producer.flush(10) == 0

    # The running partition flows...
    received = consume_until(consumer, lambda got: len(got) >= 5)
    # ... and for a further bounded second nothing arrives from the paused one.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        received += consumer.poll_batch(100, 0.1)
    assert {m.topic_partition for m in received} == {running}
    assert [m.value for m in received] == [b"running-%d" % n for n in range(5)]
    assert set(consumer.assignment()) == {paused, running}  # paused, still assigned

    consumer.resume([paused])
    resumed = consume_until(consumer, lambda got: len(got) >= 5)
    assert [m.value for m in resumed] == [b"paused-%d" % n for n in range(5)]
    assert [m.offset for m in resumed] == list(range(5))
