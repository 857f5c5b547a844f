"""The outbox relay against real PostgreSQL and Kafka.

One temporary database for the module (migrated with Alembic); each test
truncates the outbox first and publishes to its own topic prefix, deleting
its topics afterwards. Relay processes run as ``python -m producer.relay``
subprocesses where process boundaries matter (leader election, SIGKILL,
SIGTERM) and in-process otherwise. Every wait is a bounded deadline loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, text

from adapters.avro.codec import decode_push_requested
from adapters.kafka.config import admin_config
from adapters.kafka.topics import TopicNames
from adapters.postgres.engine import make_engine, make_session_factory
from adapters.postgres.outbox_relay import PgOutboxRelayStore
from adapters.postgres.unit_of_work import SqlAlchemyUnitOfWork
from domain.model import DraftOrder, OrderLine
from domain.records import EVENT_HEADER_NAMES, OutboxEvent
from entrypoints.bootstrap import sql_unit_of_work
from producer.approval import approve_draft_order, build_push_requested
from producer.relay import OutboxRelay, RelayConfig, RelayExit, RelaySettings, run_relay
from producer.relay_kafka import build_relay, ensure_relay_topics

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def clean_outbox(engine: Engine) -> Engine:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE draft_order, outbox_event RESTART IDENTITY"))
    return engine


@pytest.fixture
def relay_config(
    migrated_db_url: str, kafka_bootstrap_servers: str, clean_outbox: Engine
) -> Iterator[RelayConfig]:
    config = RelayConfig(
        database_url=migrated_db_url,
        bootstrap_servers=kafka_bootstrap_servers,
        topic_prefix=f"it-relay-{uuid.uuid4().hex[:10]}",
        partitions=PARTITIONS,
    )
    ensure_relay_topics(config)
    yield config
    admin = AdminClient(admin_config(kafka_bootstrap_servers))
    names = list(TopicNames(config.topic_prefix).all())
    for future in admin.delete_topics(names, operation_timeout=10).values():
        with contextlib.suppress(Exception):  # best effort: a leftover topic costs only disk
            future.result()


@dataclass
class Received:
    key: bytes
    value: bytes
    headers: dict[str, str]
    partition: int
    offset: int


def _received(msg: Message) -> Received:
    key, value = msg.key(), msg.value()
    partition, offset = msg.partition(), msg.offset()
    assert isinstance(key, bytes) and isinstance(value, bytes)
    assert partition is not None and offset is not None
    raw_headers: Any = msg.headers() or []  # a list of (str, bytes) from the broker
    headers: dict[str, str] = {}
    for name, raw in raw_headers:
        assert isinstance(raw, bytes)
        headers[str(name)] = raw.decode()
    return Received(key, value, headers, partition, offset)


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[Received]:
    """Read ``topic`` from the beginning up to its end, expecting at least ``expected`` messages.

    "The end" is each partition's high watermark once ``expected`` messages are in
    the topic, so duplicates beyond ``expected`` show up too, however slow the read.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"it-relay-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        deadline = time.monotonic() + timeout

        def high_watermarks() -> dict[int, int]:
            return {
                tp.partition: consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in partitions
            }

        ends = high_watermarks()
        while sum(ends.values()) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
            ends = high_watermarks()
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        received: list[Received] = []
        next_offsets = dict.fromkeys(ends, 0)
        while time.monotonic() < deadline and any(next_offsets[p] < ends[p] for p in ends):
            for message in consumer.consume(1000, timeout=0.5):
                if not message.error():
                    received.append(_received(message))
                    next_offsets[message.partition()] = message.offset() + 1
        return received
    finally:
        consumer.close()


def make_order(org: uuid.UUID, number: str) -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=number,
        customer_code="CUST-1",
        lines=(
            OrderLine(
                line_no=1, product_code="SKU-1", quantity=Decimal("2"), unit_price=Decimal("9.99")
            ),
        ),
    )


def outbox_counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        total, published = conn.execute(
            text("SELECT count(*), count(published_at) FROM outbox_event")
        ).one()
    return int(total), int(published)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


_INSERT = text(
    "INSERT INTO outbox_event (event_id, aggregate_type, aggregate_id, org_id, event_type,"
    " payload, headers, created_at) VALUES (:event_id, :aggregate_type, :aggregate_id,"
    " :org_id, :event_type, CAST(:payload AS jsonb), CAST(:headers AS jsonb), :created_at)"
    " RETURNING id"
)


def insert_params(event: OutboxEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "org_id": event.org_id,
        "event_type": event.event_type,
        "payload": json.dumps(event.payload),
        "headers": json.dumps(event.headers),
        "created_at": event.created_at,
    }


class SqlEventWriter:
    """Inserts outbox events one transaction each (as approvals would), fast."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def insert(self, event: OutboxEvent) -> int:
        return int(self.conn.execute(_INSERT, insert_params(event)).scalar_one())

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def sequenced_events(orders: list[DraftOrder], per_order: int) -> list[OutboxEvent]:
    """``per_order`` events per order, interleaved; header ``attempt`` numbers them per order."""
    events: list[OutboxEvent] = []
    now = datetime.now(UTC)
    for seq in range(per_order):
        for order in orders:
            event = build_push_requested(order, occurred_at=now)
            events.append(replace(event, headers={**event.headers, "attempt": str(seq)}))
    return events


def assert_per_key_order(
    received: list[Received], orders: list[DraftOrder], per_order: int
) -> None:
    """Every event arrived; per key, first deliveries come in sequence (re-sends allowed)."""
    firsts: dict[bytes, list[int]] = defaultdict(list)
    seen: set[tuple[bytes, int]] = set()
    for message in sorted(received, key=lambda m: (m.partition, m.offset)):
        attempt = int(message.headers["attempt"])
        if (message.key, attempt) not in seen:
            seen.add((message.key, attempt))
            firsts[message.key].append(attempt)
    assert set(firsts) == {str(order.id).encode() for order in orders}
    for key, attempts in firsts.items():
        assert attempts == list(range(per_order)), f"order of key {key!r} broken: {attempts}"


class RelayProcess:
    """One ``python -m producer.relay`` subprocess with its log in a file."""

    def __init__(self, config: RelayConfig, log: Path, *extra: str) -> None:
        self.log = log
        self._file = log.open("wb")
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "producer.relay",
                "--database-url",
                config.database_url,
                "--bootstrap-servers",
                config.bootstrap_servers,
                "--topic-prefix",
                config.topic_prefix,
                "--partitions",
                str(PARTITIONS),
                "--batch-size",
                "100",
                "--max-in-flight",
                "400",
                *extra,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def is_leader(self) -> bool:
        return "Relay is the leader" in self.output()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._file.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    started: list[RelayProcess] = []

    def start(config: RelayConfig, *extra: str) -> RelayProcess:
        process = RelayProcess(config, tmp_path / f"relay-{len(started)}.log", *extra)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def in_thread(relay: OutboxRelay) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(relay.run()), daemon=True)
    thread.start()
    return thread, result


# --- tests ---------------------------------------------------------------------------------


def test_drain_publishes_every_approved_order(relay_config: RelayConfig, engine: Engine) -> None:
    org = uuid.uuid4()
    uow = sql_unit_of_work(database_url=relay_config.database_url)
    events = {
        e.event_id: e
        for e in (approve_draft_order(uow, org, make_order(org, f"SO-{i}")) for i in range(40))
    }

    outcome = run_relay(
        relay_config,
        RelaySettings(drain=True, batch_size=16, max_in_flight=48),
        install_signal_handlers=False,
    )

    assert outcome is RelayExit.DRAINED
    assert outbox_counts(engine) == (40, 40)
    topic = TopicNames(relay_config.topic_prefix).requests
    received = read_topic(relay_config.bootstrap_servers, topic, 40)
    assert len(received) == 40  # one clean run: no duplicates
    for message in received:
        assert set(EVENT_HEADER_NAMES) <= set(message.headers)
        event = events[uuid.UUID(message.headers["event_id"])]
        assert message.headers == event.headers
        assert message.key == str(event.aggregate_id).encode()
        record = decode_push_requested(message.value)
        assert str(record["draft_order_id"]) == str(event.aggregate_id)
        assert str(record["event_id"]) == str(event.event_id)
        assert record["order"]["order_number"] == event.payload["order_number"]


def test_relay_publishes_the_value_stored_with_the_event_byte_for_byte(
    relay_config: RelayConfig, engine: Engine
) -> None:
    # Writers encode the value in their transaction; the relay must send exactly
    # those bytes (and not re-encode the payload).
    def prebaked(event: OutboxEvent) -> bytes:
        return b"prebaked:" + str(event.event_id).encode()

    uow = SqlAlchemyUnitOfWork(make_session_factory(engine), outbox_encoder=prebaked)
    org = uuid.uuid4()
    events = [approve_draft_order(uow, org, make_order(org, f"PB-{i}")) for i in range(5)]

    outcome = run_relay(relay_config, RelaySettings(drain=True), install_signal_handlers=False)

    assert outcome is RelayExit.DRAINED
    topic = TopicNames(relay_config.topic_prefix).requests
    received = read_topic(relay_config.bootstrap_servers, topic, 5)
    assert sorted(m.value for m in received) == sorted(prebaked(e) for e in events)


def test_two_relay_processes_keep_per_key_order(
    relay_config: RelayConfig, engine: Engine, spawn: Callable[..., RelayProcess]
) -> None:
    first = spawn(relay_config)
    wait_until(first.is_leader, 15, "the first relay to lead")
    second = spawn(relay_config)
    wait_until(lambda: "standby" in second.output(), 15, "the second relay to stand by")

    org = uuid.uuid4()
    orders = [make_order(org, f"SO-{i}") for i in range(5)]
    events = sequenced_events(orders, per_order=60)
    writer = SqlEventWriter(relay_config.database_url)
    try:
        for event in events:
            writer.insert(event)
    finally:
        writer.close()

    wait_until(lambda: outbox_counts(engine) == (300, 300), 20, "every event to be published")
    topic = TopicNames(relay_config.topic_prefix).requests
    received = read_topic(relay_config.bootstrap_servers, topic, 300)
    assert_per_key_order(received, orders, 60)
    assert not second.is_leader()


def test_standby_takes_over_when_the_leader_is_killed(
    relay_config: RelayConfig, engine: Engine, spawn: Callable[..., RelayProcess]
) -> None:
    first = spawn(relay_config)
    wait_until(first.is_leader, 15, "the first relay to lead")
    second = spawn(relay_config)
    wait_until(lambda: "standby" in second.output(), 15, "the second relay to stand by")

    org = uuid.uuid4()
    orders = [make_order(org, f"SO-{i}") for i in range(4)]
    events = sequenced_events(orders, per_order=250)
    writer = SqlEventWriter(relay_config.database_url)
    inserted = {"n": 0}

    def insert_all() -> None:
        # ~3 s of steady approvals, so the kill lands mid-stream.
        for event in events:
            writer.insert(event)
            inserted["n"] += 1
            time.sleep(0.002)

    inserter = threading.Thread(target=insert_all, daemon=True)
    inserter.start()
    try:
        wait_until(lambda: outbox_counts(engine)[1] >= 200, 20, "the leader to publish some")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        assert inserted["n"] < len(events), "the stream ended before the kill"
        wait_until(second.is_leader, 10, "the standby to take over")
        inserter.join(30)
        assert not inserter.is_alive()
    finally:
        writer.close()

    wait_until(lambda: outbox_counts(engine) == (1000, 1000), 20, "every event to be published")
    topic = TopicNames(relay_config.topic_prefix).requests
    received = read_topic(relay_config.bootstrap_servers, topic, 1000)
    assert {m.headers["event_id"] for m in received} == {str(e.event_id) for e in events}
    assert_per_key_order(received, orders, 250)


def test_sigterm_exits_zero_with_every_acked_event_marked(
    relay_config: RelayConfig, engine: Engine, spawn: Callable[..., RelayProcess]
) -> None:
    org = uuid.uuid4()
    orders = [make_order(org, f"SO-{i}") for i in range(10)]
    events = sequenced_events(orders, per_order=300)
    writer = SqlEventWriter(relay_config.database_url)
    try:
        for event in events:
            writer.insert(event)
    finally:
        writer.close()

    relay = spawn(relay_config)
    wait_until(lambda: outbox_counts(engine)[1] > 0, 20, "the relay to publish some")
    relay.proc.send_signal(signal.SIGTERM)
    assert relay.proc.wait(15) == 0, relay.output()

    with engine.connect() as conn:
        marked = {
            str(row[0])
            for row in conn.execute(
                text("SELECT event_id FROM outbox_event WHERE published_at IS NOT NULL")
            )
        }
    topic = TopicNames(relay_config.topic_prefix).requests
    received = read_topic(relay_config.bootstrap_servers, topic, len(marked))
    on_topic = {m.headers["event_id"] for m in received}
    # The flush on stop let every in-flight event be acknowledged and marked:
    # what reached Kafka is exactly what is marked.
    assert on_topic == marked
    assert 0 < len(marked) < len(events), "the stop did not land mid-stream"
    assert "Relay stopped" in relay.output()


def test_idle_relay_costs_about_one_query_per_second(relay_config: RelayConfig) -> None:
    settings = RelaySettings(idle_poll_s=1.0, standby_retry_s=1.0)
    leader_source = PgOutboxRelayStore(relay_config.database_url)
    standby_source = PgOutboxRelayStore(relay_config.database_url)
    leader = build_relay(relay_config, settings, source=leader_source)
    standby = build_relay(relay_config, settings, source=standby_source)
    leader_thread, _ = in_thread(leader)
    try:
        wait_until(lambda: leader_source.is_leader, 10, "the relay to lead")
        standby_thread, _ = in_thread(standby)
        try:
            time.sleep(1.5)  # settle: first claims, first standby attempt
            before = (leader_source.statements, standby_source.statements)
            time.sleep(5.0)
            after = (leader_source.statements, standby_source.statements)
        finally:
            standby.stop()
            standby_thread.join(10)
    finally:
        leader.stop()
        leader_thread.join(10)
    leader_rate = (after[0] - before[0]) / 5.0
    standby_rate = (after[1] - before[1]) / 5.0
    assert leader_rate <= 1.2, leader_rate
    assert standby_rate <= 1.2, standby_rate
    assert not standby_source.is_leader


def test_notify_wakes_an_idle_relay_and_stragglers_are_published(
    relay_config: RelayConfig, engine: Engine
) -> None:
    # A long idle poll: only LISTEN/NOTIFY can explain a fast publish.
    settings = RelaySettings(idle_poll_s=30.0, rescan_interval_s=0.5)
    relay = build_relay(relay_config, settings)
    thread, result = in_thread(relay)
    org = uuid.uuid4()
    writer = SqlEventWriter(relay_config.database_url)
    try:
        time.sleep(1.0)  # the relay is idle now
        started = time.monotonic()
        writer.insert(build_push_requested(make_order(org, "SO-1"), occurred_at=datetime.now(UTC)))
        wait_until(lambda: outbox_counts(engine) == (1, 1), 5, "the NOTIFY wake-up")
        assert time.monotonic() - started < 2.0

        # A straggler: a lower id commits after a higher one was published.
        with engine.connect() as slow:
            slow.begin()
            straggler = build_push_requested(make_order(org, "SO-2"), occurred_at=datetime.now(UTC))
            slow.execute(_INSERT, insert_params(straggler))
            later = build_push_requested(make_order(org, "SO-3"), occurred_at=datetime.now(UTC))
            writer.insert(later)
            wait_until(lambda: outbox_counts(engine) == (2, 2), 5, "the later event")
            slow.commit()
        wait_until(lambda: outbox_counts(engine) == (3, 3), 5, "the straggler")
    finally:
        writer.close()
        relay.stop()
        thread.join(15)
    assert result == [RelayExit.STOPPED]
    topic = TopicNames(relay_config.topic_prefix).requests
    received = read_topic(relay_config.bootstrap_servers, topic, 3)
    assert len({m.headers["event_id"] for m in received}) == 3


def test_relay_reconnects_after_losing_its_database_session(
    relay_config: RelayConfig, engine: Engine
) -> None:
    settings = RelaySettings(batch_size=50, max_in_flight=200, reconnect_initial_s=0.2)
    relay = build_relay(relay_config, settings)
    thread, result = in_thread(relay)
    org = uuid.uuid4()
    orders = [make_order(org, f"SO-{i}") for i in range(4)]
    events = sequenced_events(orders, per_order=300)
    writer = SqlEventWriter(relay_config.database_url)
    try:
        wait_until(lambda: relay.stats.leaderships == 1, 10, "the relay to lead")
        for event in events[:600]:
            writer.insert(event)
        wait_until(lambda: outbox_counts(engine)[1] >= 100, 10, "the relay to publish some")
        # What an admin (or a server restart) does to the relay's session.
        with engine.connect() as admin:
            killed = admin.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = 'orderflow-relay'"
                )
            ).scalar_one()
        assert killed == 1
        for event in events[600:]:
            writer.insert(event)
        wait_until(lambda: outbox_counts(engine) == (1200, 1200), 20, "every event published")
    finally:
        writer.close()
        relay.stop()
        thread.join(15)
    assert result == [RelayExit.STOPPED]
    assert relay.stats.reconnects >= 1
    assert relay.stats.leaderships >= 2
    topic = TopicNames(relay_config.topic_prefix).requests
    received = read_topic(relay_config.bootstrap_servers, topic, 1200)
    assert {m.headers["event_id"] for m in received} == {str(e.event_id) for e in events}
    assert_per_key_order(received, orders, 300)
