"""Helpers shared by the pipeline's integration tests (relay, worker processes, outages).

Everything waits on conditions with deadlines; nothing here sleeps a fixed time
to let something happen.
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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.avro.codec import decode_push_result
from adapters.crypto.encryption import EncryptionService
from adapters.kafka.config import admin_config
from adapters.kafka.topics import TopicNames
from adapters.postgres.engine import make_engine
from adapters.postgres.models import ERPConnection
from consumer.worker import PushWorker
from domain.model import DraftOrder, OrderLine
from domain.records import OutboxEvent
from entrypoints.bootstrap import sql_unit_of_work
from entrypoints.relay_wiring import RelayConfig
from entrypoints.worker_process import WorkerConfig, run_worker
from producer.approval import approve_draft_order, build_push_requested
from producer.relay import OutboxRelay

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Delete topics, best effort (a leftover topic costs only disk)."""
    admin = AdminClient(admin_config(bootstrap))
    for future in admin.delete_topics(list(names), operation_timeout=10).values():
        with contextlib.suppress(Exception):
            future.result()


@contextlib.contextmanager
def relay_and_worker(
    relay: OutboxRelay, worker: PushWorker[Any], config: WorkerConfig, timeout: float
) -> Iterator[None]:
    """Run a relay and a push worker in threads until the block ends; then stop both
    (the SIGTERM path) and join them."""
    threads = [
        threading.Thread(target=relay.run, daemon=True),
        threading.Thread(
            target=lambda: run_worker(config, install_signal_handlers=False, worker=worker),
            daemon=True,
        ),
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        worker.stop()
        relay.stop()
        for thread in threads:
            thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "relay or worker did not stop"


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


# Codes a broker answers while a new topic's partitions still elect their leaders;
# librdkafka does not flag all of them retriable.
_LEADER_NOT_READY = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
    }
)


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[Received]:
    """Read ``topic`` from the beginning up to its end, expecting at least ``expected`` messages.

    "The end" is each partition's high watermark once ``expected`` messages are in
    the topic, so duplicates beyond ``expected`` show up too, however slow the read
    (stopping shortly after ``expected`` records missed tail records behind wire
    duplicates on a loaded machine).
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
            # A topic created a moment ago may not have its partition leaders yet.
            while True:
                try:
                    return {
                        tp.partition: consumer.get_watermark_offsets(tp, timeout=5)[1]
                        for tp in partitions
                    }
                except KafkaException as exc:
                    error = exc.args[0]
                    electing = error.code() in _LEADER_NOT_READY
                    if not (electing or error.retriable()) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

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


@dataclass
class InProcessPipeline:
    """What every in-process pipeline test drives: topics, the database, a MOCK connection.

    Subclasses add their relay, worker and connector registry.
    """

    topics: TopicNames
    bootstrap: str
    factory: sessionmaker[Session]

    def add_connection(self, org: uuid.UUID, config: Mapping[str, Any]) -> None:
        """Store an ACTIVE, encrypted MOCK connection for ``org``."""
        blob = EncryptionService.encrypt_config(config, org_id=org, connector_type="MOCK")
        with self.factory() as session:
            session.add(
                ERPConnection(
                    org_id=org, connector_type="MOCK", config_encrypted=blob, status="ACTIVE"
                )
            )
            session.commit()

    def approve(self, order: DraftOrder) -> None:
        """Approve ``order`` (order + outbox event in one transaction)."""
        approve_draft_order(sql_unit_of_work(session_factory=self.factory), order.org_id, order)

    def read(self, topic: str, expected: int, timeout: float = 30.0) -> list[Received]:
        """Every record of ``topic`` once ``expected`` are there (see :func:`read_topic`)."""
        return read_topic(self.bootstrap, topic, expected, timeout)

    def results(self, expected: int) -> list[dict[str, Any]]:
        """The decoded PushResults of the results topic."""
        return [decode_push_result(r.value) for r in self.read(self.topics.results, expected)]


def make_order(org: uuid.UUID, number: str | None = None) -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=number or f"SO-{uuid.uuid4().hex[:8]}",
        customer_code="CUST-1",
        lines=(
            OrderLine(
                line_no=1, product_code="SKU-1", quantity=Decimal("2"), unit_price=Decimal("9.99")
            ),
        ),
    )


#: Every event written, sent or not: the relay moves what it sent to outbox_published.
OUTBOX_WRITTEN = (
    "(SELECT id, aggregate_id, org_id, event_type FROM outbox_event"
    " UNION ALL SELECT id, aggregate_id, org_id, event_type FROM outbox_published) AS written"
)


def outbox_counts(engine: Engine) -> tuple[int, int]:
    """``(events written, events published)``: the relay moves what it sent to outbox_published."""
    with engine.connect() as conn:
        waiting, published = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM outbox_event),"
                " (SELECT count(*) FROM outbox_published)"
            )
        ).one()
    return int(waiting) + int(published), int(published)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


INSERT_OUTBOX_SQL = text(
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
        return int(self.conn.execute(INSERT_OUTBOX_SQL, insert_params(event)).scalar_one())

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
    """One ``orderflow relay`` subprocess with its log in a file."""

    def __init__(self, config: RelayConfig, log: Path, *extra: str) -> None:
        self.log = log
        self._file = log.open("wb")
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "entrypoints.cli",
                "relay",
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


# --- push worker processes -----------------------------------------------------------------

#: Environment variables read by ``tests.integration._worker_main``.
JOURNAL_ENV = "ORDERFLOW_TEST_EXPORT_JOURNAL"
KILL_ENV = "ORDERFLOW_TEST_KILL_AFTER_SUCCESSES"


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker process of one test shares: services, topics, group, key, journal."""

    database_url: str
    bootstrap: str
    topics: TopicNames
    group: str
    master_key: str
    journal: Path
    concurrency: int = 4
    max_retries: int = 3
    retry_delay_base: float = 1.0
    log_level: str = "INFO"

    def argv(self) -> list[str]:
        return [
            "--database-url",
            self.database_url,
            "--bootstrap-servers",
            self.bootstrap,
            "--topic-prefix",
            self.topics.prefix,
            "--partitions",
            str(PARTITIONS),
            "--group",
            self.group,
            "--concurrency",
            str(self.concurrency),
            "--max-retries",
            str(self.max_retries),
            "--retry-delay-base",
            str(self.retry_delay_base),
            "--retry-tiers",
            str(self.topics.retry_tiers),
            "--log-level",
            self.log_level,
        ]


class WorkerProcess:
    """One push worker process (``orderflow consume`` behind the test hooks)."""

    def __init__(self, setup: WorkerSetup, log: Path, *, kill_after: int = 0) -> None:
        self.log = log
        self._file = log.open("wb")
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "ENCRYPTION_MASTER_KEY": setup.master_key,
            JOURNAL_ENV: str(setup.journal),
        }
        if kill_after:
            env[KILL_ENV] = str(kill_after)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration._worker_main", *setup.argv()],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def has_partitions(self) -> bool:
        """True once a rebalance gave this member at least one partition."""
        return "Assigned [(" in self.output()

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._file.close()


@dataclass(frozen=True)
class Call:
    """One line of the export journal."""

    what: str  # start | end | killed
    order: str
    attempt: int
    pid: int
    status: str = ""


class Journal:
    """Reads the export journal the worker processes append to."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def calls(self) -> list[Call]:
        if not self.path.exists():
            return []
        calls = []
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if parts[0] == "end":
                calls.append(Call("end", parts[1], int(parts[2]), int(parts[4]), parts[3]))
            else:
                calls.append(Call(parts[0], parts[1], int(parts[2]), int(parts[3])))
        return calls

    def exports(self) -> Counter[str]:
        """Successful ERP exports per draft order id."""
        return Counter(c.order for c in self.calls() if c.what == "end" and c.status == "SUCCESS")

    def running(self) -> set[tuple[str, int]]:
        """(order, attempt) of calls started and not ended."""
        started = {(c.order, c.attempt) for c in self.calls() if c.what == "start"}
        return started - {(c.order, c.attempt) for c in self.calls() if c.what == "end"}

    def assert_calls_in_sequence(self) -> None:
        """Per order: attempts 0, 1, 2 ... each called once, never overlapping, never repeated."""
        per_order: dict[str, list[Call]] = defaultdict(list)
        for call in self.calls():
            if call.what in ("start", "end"):
                per_order[call.order].append(call)
        for order, calls in per_order.items():
            expected: list[tuple[str, int]] = []
            for attempt in range(len(calls) // 2):
                expected += [("start", attempt), ("end", attempt)]
            assert [(c.what, c.attempt) for c in calls] == expected, (order, calls)


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (0 where none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = consumer.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=20
        )
    finally:
        consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in committed}


def push_log_rows(engine: Engine) -> list[Any]:
    """Every push log row: draft order, attempt, status, claim and outcome times."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT draft_order_id, attempt, status, created_at, updated_at"
                    " FROM erp_push_log ORDER BY draft_order_id, attempt"
                )
            )
        )


def statuses(engine: Engine) -> Counter[str]:
    """How many push log rows have each status."""
    return Counter(row.status for row in push_log_rows(engine))


def final_statuses(engine: Engine) -> dict[str, str]:
    """Latest attempt's status per draft order id."""
    latest: dict[str, str] = {}
    for row in push_log_rows(engine):  # ordered by attempt within an order
        latest[str(row.draft_order_id)] = row.status
    return latest
