"""The outbox relay against real PostgreSQL and Kafka.

One temporary database for the module (migrated with Alembic); each test
truncates the outbox first and publishes to its own topic prefix, deleting
its topics afterwards. Relay processes run as ``orderflow relay``
subprocesses where process boundaries matter (leader election, SIGKILL,
SIGTERM) and in-process otherwise. Every wait is a bounded deadline loop.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, text

from adapters.avro.codec import decode_push_requested
from adapters.kafka.topics import TopicNames
from adapters.postgres.engine import make_session_factory
from adapters.postgres.outbox_relay import PgOutboxRelayStore
from adapters.postgres.unit_of_work import SqlAlchemyUnitOfWork
from domain.records import EVENT_HEADER_NAMES, OutboxEvent
from entrypoints.bootstrap import sql_unit_of_work
from entrypoints.relay_wiring import RelayConfig, build_relay, ensure_relay_topics, run_relay
from producer.approval import approve_draft_order, build_push_requested
from producer.relay import OutboxRelay
from producer.relay_settings import RelayExit, RelaySettings
from tests.integration._pipeline import (
    INSERT_OUTBOX_SQL,
    PARTITIONS,
    RelayProcess,
    SqlEventWriter,
    assert_per_key_order,
    delete_topics,
    insert_params,
    make_order,
    outbox_counts,
    read_topic,
    sequenced_events,
    wait_until,
)

# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def clean_outbox(engine: Engine) -> Engine:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE draft_order, outbox_event, outbox_published RESTART IDENTITY"))
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
    delete_topics(kafka_bootstrap_servers, TopicNames(config.topic_prefix).all())


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
            str(row[0]) for row in conn.execute(text("SELECT event_id FROM outbox_published"))
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
            slow.execute(INSERT_OUTBOX_SQL, insert_params(straggler))
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


_INSERT_RAW_SQL = text(
    "INSERT INTO outbox_event (event_id, aggregate_type, aggregate_id, org_id, event_type,"
    " payload, headers, created_at, value) VALUES (:event_id, 'DraftOrder', :aggregate_id,"
    " :org_id, :event_type, '{}'::jsonb, CAST(:headers AS jsonb), now(), :value) RETURNING id"
)


def _insert_raw(
    engine: Engine, aggregate: uuid.UUID, headers: str, value: bytes | None, event_type: str
) -> int:
    with engine.begin() as conn:
        params = {
            "event_id": uuid.uuid4(),
            "aggregate_id": aggregate,
            "org_id": uuid.uuid4(),
            "event_type": event_type,
            "headers": headers,
            "value": value,
        }
        return int(conn.execute(_INSERT_RAW_SQL, params).scalar_one())


def test_claim_returns_lean_rows_and_the_full_event_only_without_a_stored_value(
    relay_config: RelayConfig, engine: Engine
) -> None:
    org = uuid.uuid4()
    stored = _insert_raw(engine, org, '{"event_id": "e1"}', b"\x00\xffbytes", "PushRequested")
    writer = SqlEventWriter(relay_config.database_url)
    try:
        event = build_push_requested(make_order(org, "SO-L"), occurred_at=datetime.now(UTC))
        unencoded = writer.insert(event)  # no value: the relay encodes it
    finally:
        writer.close()
    store = PgOutboxRelayStore(relay_config.database_url)
    try:
        assert store.try_acquire_leadership()
        first, second = store.claim(0, 10)
        assert store.claim(unencoded, 10) == []
    finally:
        store.close()

    assert first == (stored, "PushRequested", str(org), b"\x00\xffbytes", {"event_id": "e1"}, None)
    assert isinstance(first[3], bytes)  # the Kafka client takes bytes, not memoryview
    token, event_type, key, value, headers, full = second
    assert (token, event_type, key, value) == (
        unencoded,
        event.event_type,
        str(event.aggregate_id),
        None,
    )
    assert headers == event.headers
    assert full is not None
    assert (full.id, full.event_id, full.payload) == (unencoded, event.event_id, event.payload)


def test_unusable_headers_hold_back_their_aggregate_and_other_keys_flow(
    relay_config: RelayConfig, engine: Engine
) -> None:
    poisoned, healthy = uuid.uuid4(), uuid.uuid4()
    bad = _insert_raw(engine, poisoned, '["not", "a", "mapping"]', b"v1", "PushRequested")
    held = _insert_raw(engine, poisoned, '{"event_id": "e2"}', b"v2", "PushRequested")
    numeric = _insert_raw(
        engine, healthy, '{"event_id": "e3", "attempt": 1}', b"v3", "PushRequested"
    )
    # Without a stored value the full event is loaded too: that must not fail either.
    unencoded = _insert_raw(engine, uuid.uuid4(), '["not", "a", "mapping"]', None, "PushRequested")

    outcome = run_relay(relay_config, RelaySettings(drain=True), install_signal_handlers=False)

    assert outcome is RelayExit.DRAINED
    with engine.connect() as conn:
        published = {row[0] for row in conn.execute(text("SELECT id FROM outbox_published"))}
    assert published == {numeric}
    assert not {bad, held, unencoded} & published
    topic = TopicNames(relay_config.topic_prefix).requests
    (message,) = read_topic(relay_config.bootstrap_servers, topic, 1)
    # A header value that is not text goes as its text, as the relay always sent it.
    assert message.headers == {"event_id": "e3", "attempt": "1"}
    assert message.value == b"v3"
