"""``orderflow dlq list|replay`` on real Kafka (and PostgreSQL + the real push worker).

Each test has its own topic prefix (``--topic-prefix``); the module has its own
temporary database. Every wait is a bounded deadline loop.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import text

from adapters.avro.codec import encode_push_requested
from adapters.avro.records import push_requested_record
from adapters.connectors.mock import MockConnector
from adapters.connectors.registry import ConnectorRegistry
from adapters.crypto.encryption import EncryptionService
from adapters.kafka.config import admin_config, producer_config
from adapters.kafka.headers import FAILURE_HEADERS, EventHeaders, FailureInfo, build_headers
from adapters.kafka.producer import EventProducer
from adapters.kafka.topics import TopicNames, ensure_topics
from adapters.postgres.engine import make_engine
from adapters.postgres.models import ERPConnection
from consumer.handling import RetrySettings
from consumer.worker import WorkerSettings
from domain.idempotency import export_key, generate_idempotency_key
from domain.model import DraftOrder, OrderLine
from domain.ports import ERPConnectorPort
from entrypoints.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from entrypoints.worker_process import WorkerConfig, build_worker, run_worker
from producer.approval import new_traceparent

PARTITIONS = 3
DEADLINE = 30.0
MARKER = "dlq-marker-secret-91b4d"


@pytest.fixture
def topics(kafka_bootstrap_servers: str) -> Iterator[TopicNames]:
    names = TopicNames(f"it-dlq-{uuid.uuid4().hex[:10]}", retry_tiers=3)
    ensure_topics(kafka_bootstrap_servers, names, PARTITIONS)
    yield names
    admin = AdminClient(admin_config(kafka_bootstrap_servers))
    for future in admin.delete_topics(list(names.all()), operation_timeout=10).values():
        with contextlib.suppress(Exception):
            future.result()


@pytest.fixture(autouse=True)
def env(
    kafka_bootstrap_servers: str, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap_servers)
    monkeypatch.setenv("DATABASE_URL", migrated_db_url)
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", os.urandom(32).hex())


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def make_order(org: uuid.UUID) -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=f"SO-{uuid.uuid4().hex[:8]}",
        customer_code="CUST-1",
        lines=(OrderLine(1, "SKU-1", Decimal("2"), Decimal("9.99")),),
        notes=MARKER,
    )


@dataclass
class DeadLetter:
    order: DraftOrder
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int = -1
    offset: int = -1


def dead_letter(
    topics: TopicNames, order: DraftOrder, *, attempt: int = 0, original: str | None = None
) -> DeadLetter:
    now = datetime.now(UTC)
    event_id = uuid.uuid4()
    key = generate_idempotency_key(order.org_id, order.id, attempt)
    value = encode_push_requested(
        push_requested_record(
            order,
            event_id=event_id,
            idempotency_key=key,
            attempt=attempt,
            occurred_at=now,
            approved_at=now,
        )
    )
    headers = EventHeaders(
        event_id=event_id,
        event_type="PushRequested",
        idempotency_key=key,
        org_id=order.org_id,
        attempt=attempt,
        occurred_at=now,
        traceparent=new_traceparent(),
        failure=FailureInfo.new(
            original_topic=original or topics.requests,
            original_partition=1,
            original_offset=42,
            error_class="UnknownSchema",
            error_message="unknown fingerprint",
            first_failure_at=now,
        ),
    )
    return DeadLetter(order, str(order.id).encode(), value, build_headers(headers))


def produce(bootstrap: str, topic: str, letters: list[DeadLetter]) -> None:
    reports: list[Any] = []
    producer = EventProducer(producer_config(bootstrap), on_delivery=reports.append)
    for letter in letters:
        producer.produce(topic, letter.key, letter.value, letter.headers)
    assert producer.flush(DEADLINE) == 0
    assert all(r.ok for r in reports)
    by_key = {r.key: r for r in reports}
    for letter in letters:
        letter.partition, letter.offset = by_key[letter.key].partition, by_key[letter.key].offset


@dataclass
class Received:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def read(bootstrap: str, topic: str, expected: int, settle: float = 0.5) -> list[Received]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"it-dlq-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        received: list[Received] = []
        deadline = time.monotonic() + DEADLINE
        while len(received) < expected and time.monotonic() < deadline:
            received += [
                Received(m.key(), m.value(), list(m.headers() or []))
                for m in consumer.consume(100, 0.3)
                if not m.error()
            ]
        received += [
            Received(m.key(), m.value(), list(m.headers() or []))
            for m in consumer.consume(100, settle)
            if not m.error()
        ]
        return received
    finally:
        consumer.close()


def test_list_shows_every_record_without_values(
    topics: TopicNames, kafka_bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    org = uuid.uuid4()
    letters = [dead_letter(topics, make_order(org)) for _ in range(3)]
    letters.append(dead_letter(topics, make_order(org), attempt=2, original=topics.retry(2)))
    produce(kafka_bootstrap_servers, topics.dlq, letters)
    # A poison message with no headers at all (not from our consumer).
    poison = DeadLetter(make_order(org), b"poison", MARKER.encode(), [])
    produce(kafka_bootstrap_servers, topics.dlq, [poison])

    status, out = run("dlq", "list", "--topic-prefix", topics.prefix)
    assert status == EXIT_OK
    listed = json.loads(out)
    assert len(listed) == 5
    by_key = {r["key"]: r for r in listed}
    for letter in letters:
        row = by_key[letter.key.decode()]
        assert (row["partition"], row["offset"]) == (letter.partition, letter.offset)
        assert row["event_id"] == dict(letter.headers)["event_id"].decode()
        assert row["error_class"] == "UnknownSchema"
        assert row["error_message"] == "unknown fingerprint"
        assert (row["original_partition"], row["original_offset"]) == (1, 42)
    assert by_key[letters[-1].key.decode()]["original_topic"] == topics.retry(2)
    assert by_key["poison"]["header_problem"] == "no failure headers"
    assert MARKER not in out + "".join(capsys.readouterr())

    status, empty = run("dlq", "list", "--topic-prefix", f"it-dlq-empty-{uuid.uuid4().hex[:8]}")
    assert status == EXIT_FAILED and empty == ""  # the command line is right; the topic is not
    assert "does not exist" in capsys.readouterr().err


def test_replay_republishes_key_value_and_headers_to_the_original_topic(
    topics: TopicNames, kafka_bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    org = uuid.uuid4()
    first = dead_letter(topics, make_order(org))
    from_tier = dead_letter(topics, make_order(org), attempt=2, original=topics.retry(2))
    untouched = dead_letter(topics, make_order(org))
    produce(kafka_bootstrap_servers, topics.dlq, [first, from_tier, untouched])

    status, out = run(
        "dlq",
        "replay",
        "--topic-prefix",
        topics.prefix,
        "--offset",
        f"{first.partition}:{first.offset}",
        "--offset",
        f"{from_tier.partition}:{from_tier.offset}",
    )
    assert status == EXIT_OK, out
    summary = json.loads(out)
    assert (summary["replayed"], summary["skipped"], summary["failed"]) == (2, 0, 0)
    assert {r["topic"] for r in summary["records"]} == {topics.requests}
    # Orders the push log never saw: republished, and said so per record.
    assert {(r["dlq_partition"], r["dlq_offset"], r["action"]) for r in summary["results"]} == {
        (first.partition, first.offset, "republished"),
        (from_tier.partition, from_tier.offset, "republished"),
    }

    received = {r.key: r for r in read(kafka_bootstrap_servers, topics.requests, 2)}
    assert set(received) == {first.key, from_tier.key}
    for letter in (first, from_tier):
        got = received[letter.key]
        assert got.value == letter.value
        standard = [(k, v) for k, v in letter.headers if k not in FAILURE_HEADERS]
        assert [(k, v) for k, v in got.headers if not k.startswith("replayed_from_")] == standard
        extra = dict(got.headers)
        assert extra["replayed_from_original_topic"] == dict(letter.headers)["original_topic"]
        assert extra["replayed_from_dlq"] == (
            f"{topics.dlq}:{letter.partition}:{letter.offset}".encode()
        )
    assert dict(received[from_tier.key].headers)["attempt"] == b"2"

    event_id = dict(untouched.headers)["event_id"].decode()
    status, out = run("dlq", "replay", "--topic-prefix", topics.prefix, "--event-id", event_id)
    assert status == EXIT_OK, out
    records = json.loads(out)["records"]
    assert [(r["dlq_partition"], r["dlq_offset"], r["event_id"]) for r in records] == [
        (untouched.partition, untouched.offset, event_id)
    ]
    assert MARKER not in out + "".join(capsys.readouterr())


def test_replay_refuses_bad_selections_in_one_line(
    topics: TopicNames, kafka_bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    letter = dead_letter(topics, make_order(uuid.uuid4()))
    produce(kafka_bootstrap_servers, topics.dlq, [letter])
    # A wrong command line exits 2 (usage); a selection that matches nothing, 1.
    for argv, expected, code in (
        ([], "nothing selected", EXIT_USAGE),
        (["--all", "--offset", "0:0"], "not both", EXIT_USAGE),
        (["--offset", "x"], "not PARTITION:OFFSET", EXIT_USAGE),
        (["--offset", f"{letter.partition}:{letter.offset + 5}"], "no record at", EXIT_FAILED),
        (["--offset", "99:0"], "no partition 99", EXIT_FAILED),
        (["--event-id", str(uuid.uuid4())], "no selected DLQ record has event_id", EXIT_FAILED),
    ):
        status, out = run("dlq", "replay", "--topic-prefix", topics.prefix, *argv)
        err = capsys.readouterr().err
        assert status == code and out == "", argv
        assert err.startswith("orderflow: error: ") and err.count("\n") == 1
        assert expected in err
    assert read(kafka_bootstrap_servers, topics.requests, 0, settle=0.3) == []


def test_replay_without_a_database_is_refused_before_anything_is_sent(
    topics: TopicNames,
    kafka_bootstrap_servers: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    letter = dead_letter(topics, make_order(uuid.uuid4()))
    produce(kafka_bootstrap_servers, topics.dlq, [letter])
    monkeypatch.delenv("DATABASE_URL")
    status, out = run("dlq", "replay", "--topic-prefix", topics.prefix, "--all")
    err = capsys.readouterr().err
    assert (status, out) == (EXIT_USAGE, "")
    assert "DATABASE_URL is not set" in err and err.count("\n") == 1
    assert read(kafka_bootstrap_servers, topics.requests, 0, settle=0.3) == []


def test_replay_skips_a_record_without_failure_headers(
    topics: TopicNames, kafka_bootstrap_servers: str
) -> None:
    poison = DeadLetter(make_order(uuid.uuid4()), b"poison", b"junk", [])
    produce(kafka_bootstrap_servers, topics.dlq, [poison])
    status, out = run("dlq", "replay", "--topic-prefix", topics.prefix, "--all")
    assert status == EXIT_FAILED
    summary = json.loads(out)
    assert (summary["replayed"], summary["skipped"]) == (0, 1)
    [result] = summary["results"]
    assert (result["action"], result["code"]) == ("skipped", "unusable")
    assert result["reason"] == "no failure headers"


class SharedMock:
    def __init__(self) -> None:
        self.mock = MockConnector()

    def get(self, connector_type: str, /) -> ERPConnectorPort:
        if connector_type == "MOCK":
            return self.mock
        return ConnectorRegistry.get(connector_type)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {DEADLINE}s waiting for {what}")
        time.sleep(0.05)


def test_replaying_twice_through_the_push_worker_exports_once(
    topics: TopicNames, kafka_bootstrap_servers: str, migrated_db_url: str
) -> None:
    org = uuid.uuid4()
    order = make_order(org)
    blob = EncryptionService.encrypt_config({"mode": "success"}, org_id=org, connector_type="MOCK")
    engine = make_engine(migrated_db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                ERPConnection.__table__.insert().values(
                    org_id=org, connector_type="MOCK", config_encrypted=blob, status="ACTIVE"
                )
            )
        letter = dead_letter(topics, order)
        produce(kafka_bootstrap_servers, topics.dlq, [letter])

        registry = SharedMock()
        config = WorkerConfig(
            bootstrap_servers=kafka_bootstrap_servers,
            database_url=migrated_db_url,
            topic_prefix=topics.prefix,
            group_id=f"{topics.prefix}-group",
            partitions=PARTITIONS,
            worker=WorkerSettings(
                concurrency=2,
                retry=RetrySettings(retry_tiers=3),
                drain_timeout_s=10,
            ),
        )
        worker = build_worker(config, registry=registry)
        thread = threading.Thread(
            target=lambda: run_worker(config, install_signal_handlers=False, worker=worker),
            daemon=True,
        )
        thread.start()
        try:
            where = f"{letter.partition}:{letter.offset}"
            # The push log never saw the order: the record is republished as it is.
            status, out = run("dlq", "replay", "--topic-prefix", topics.prefix, "--offset", where)
            assert status == EXIT_OK, out
            assert json.loads(out)["results"][0]["action"] == "republished"
            wait_until(lambda: worker.stats.get("SUCCESS", 0) >= 1, "the replay exported")
            # Now it was exported: a second replay is skipped, saying why.
            status, out = run("dlq", "replay", "--topic-prefix", topics.prefix, "--offset", where)
            assert status == EXIT_OK, out
            summary = json.loads(out)
            assert (summary["replayed"], summary["skipped"]) == (0, 1)
            [skipped] = summary["results"]
            assert (skipped["action"], skipped["code"]) == ("skipped", "already_pushed")
            assert "already pushed: SUCCESS under key" in skipped["reason"]
            # A plain republish of it (as replay did before) is still only a duplicate.
            produce(kafka_bootstrap_servers, topics.requests, [replace(letter)])
            wait_until(lambda: worker.stats.get("duplicate", 0) >= 1, "the duplicate handled")
        finally:
            worker.stop()
            thread.join(DEADLINE)
        assert not thread.is_alive(), "worker did not stop"
        assert worker.stats.get("SUCCESS") == 1 and worker.stats.get("duplicate") == 1
        assert registry.mock.calls.get(export_key(org, order.id), 0) == 1
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT status FROM erp_push_log WHERE draft_order_id = :id"),
                {"id": order.id},
            ).all()
        assert [r.status for r in rows] == ["SUCCESS"]
    finally:
        engine.dispose()
