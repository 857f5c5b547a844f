"""``make demo-pipeline``: the event pipeline end to end on the local services.

Migrates the database, creates an organisation with an encrypted
DROPZONE_JSON_V1 connection to the local SFTP server, starts the outbox relay
and the push worker (threads of this process, on their own topic prefix and
consumer group), reads the results topic, approves N draft orders (order +
outbox event in one transaction, nothing else), waits (bounded) for their N
PushResults, stops relay and worker gracefully, and counts the files that
really landed in the SFTP dropzone. The last line is machine-readable::

    demo: approved=N succeeded=N failed=F dlq=D files=N duplicates=0 p50_ms=X p99_ms=Y

Latency is measured per order from the approval's commit to the moment its
PushResult was read from the results topic.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from adapters.connectors.registry import ConnectorRegistry
from adapters.crypto.encryption import ConfigCipher
from adapters.postgres import migrate
from adapters.postgres.engine import make_engine
from consumer.worker import PushWorker, WorkerConfig, WorkerSettings, build_worker, run_worker
from domain.records import ConnectionRecord
from entrypoints import bootstrap
from entrypoints.demo import (
    CONNECTOR_TYPE,
    _count_dropzone_files,
    _demo_order,
    _dropzone_config,
    _ensure_master_key,
)
from entrypoints.settings import Settings, SettingsError
from producer.approval import approve_draft_order
from producer.relay import OutboxRelay, RelayConfig, RelaySettings
from producer.relay_kafka import build_relay, ensure_relay_topics

_log = logging.getLogger("orderflow.pipeline_demo")

PARTITIONS = 6
RETRY_TIERS = 3
#: Longest wait for the last PushResult, in seconds (``--timeout``).
DEFAULT_TIMEOUT_S = 300.0
#: Longest wait for relay, worker and reader threads to stop.
STOP_TIMEOUT_S = 30.0


@dataclass
class _Results:
    """PushResults of this run's organisation, one per draft order (thread-safe)."""

    org_id: uuid.UUID
    lock: threading.Lock = field(default_factory=threading.Lock)
    status: dict[uuid.UUID, str] = field(default_factory=dict)
    #: Wall-clock time (``time.time()``) at which the order's result was read.
    read_at: dict[uuid.UUID, float] = field(default_factory=dict)
    #: ``approved_at`` of the result (epoch seconds), the fallback start of the latency.
    approved_at: dict[uuid.UUID, float] = field(default_factory=dict)
    records: int = 0

    def add(self, record: dict[str, Any], read_at: float) -> None:
        if uuid.UUID(str(record["org_id"])) != self.org_id:
            return
        order_id = uuid.UUID(str(record["draft_order_id"]))
        with self.lock:
            self.records += 1
            if order_id not in self.status:  # a re-published copy keeps the first read time
                self.read_at[order_id] = read_at
                self.approved_at[order_id] = record["approved_at"].timestamp()
            self.status[order_id] = str(record["status"])

    def count(self) -> int:
        with self.lock:
            return len(self.status)


class _Thread(threading.Thread):
    """A daemon thread that keeps the exception its target raised (instead of losing it)."""

    def __init__(self, name: str, target: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self._run_target = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run_target()
        except BaseException as exc:
            self.error = exc
            _log.exception("%s failed", self.name)


def _read_results(
    bootstrap_servers: str, topic: str, results: _Results, stop: threading.Event
) -> None:
    from adapters.avro.codec import decode_push_result
    from adapters.kafka.config import consumer_config
    from adapters.kafka.consumer import EventConsumer

    config = consumer_config(
        bootstrap_servers,
        group_id=f"{topic}-demo-reader-{uuid.uuid4().hex[:8]}",
        client_id="orderflow-pipeline-demo-reader",
        logger=_log,
    )
    with EventConsumer(config) as consumer:
        consumer.subscribe([topic])
        while not stop.is_set():
            messages = consumer.poll_batch(500, 0.05)
            now = time.time()
            for message in messages:
                try:
                    results.add(decode_push_result(message.value), now)
                except Exception:
                    _log.warning("Undecodable record on %s@%d", topic, message.offset)


def _count_records(bootstrap_servers: str, topic: str) -> int:
    """How many records ``topic`` holds (sum of high minus low watermarks)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"{topic}-demo-count",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        total = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += max(0, high - low)
        return total
    finally:
        consumer.close()


def _successful_exports_beyond_one(engine: Engine, org_id: uuid.UUID) -> int:
    """Orders of ``org_id`` with more than one SUCCESS row in the push log."""
    with engine.connect() as conn:
        value = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT draft_order_id FROM erp_push_log"
                " WHERE org_id = :org AND status = 'SUCCESS'"
                " GROUP BY draft_order_id HAVING count(*) > 1) AS dup"
            ),
            {"org": org_id},
        ).scalar_one()
    return int(value)


def _kafka() -> str:
    value = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not value:
        raise SystemExit(
            "demo: KAFKA_BOOTSTRAP_SERVERS is not set; run it through `make demo-pipeline`"
        )
    return value


def _percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class _Progress:
    """A carriage-return progress bar on stderr, redrawn every 10% of approvals or results."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._shown: tuple[int, int] | None = None

    def show(self, approved: int, done: int, *, final: bool = False) -> None:
        step = (approved * 10 // self.total, done * 10 // self.total)
        if step == self._shown and not final:
            return
        self._shown = step
        filled = done * 30 // self.total
        bar = "#" * filled + "." * (30 - filled)
        sys.stderr.write(
            f"\rpipeline [{bar}] results {done}/{self.total}  approved {approved}/{self.total}"
        )
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run(orders: int, topic_prefix: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """Run the pipeline demo with ``orders`` approvals; return the process exit status."""
    settings = Settings.from_env()
    database_url = settings.require_database_url()
    _kafka()
    state_dir = Path(os.environ.get("ORDERFLOW_INFRA_DIR") or Path.cwd() / ".infra")
    key_source = _ensure_master_key(state_dir)

    migrate.upgrade(database_url)
    print(f"database migrated to {migrate.current_revision(database_url)}")
    print(f"master key: {key_source}")

    engine = make_engine(database_url)
    try:
        return _run(engine, database_url, orders, topic_prefix, timeout_s)
    finally:
        engine.dispose()


def _run(
    engine: Engine, database_url: str, orders: int, topic_prefix: str, timeout_s: float
) -> int:
    from adapters.kafka.topics import TopicNames

    bootstrap_servers = _kafka()
    topics = TopicNames(topic_prefix, retry_tiers=RETRY_TIERS)
    org_id = uuid.uuid4()
    config = _dropzone_config()
    blob = ConfigCipher.from_env().encrypt_config(
        config, org_id=org_id, connector_type=CONNECTOR_TYPE
    )
    factory = bootstrap.session_factory(engine=engine)
    uow = bootstrap.sql_unit_of_work(session_factory=factory)
    with uow:
        uow.connections.add(ConnectionRecord.new(org_id, CONNECTOR_TYPE, blob))
        uow.commit()
    print(f"organisation {org_id}: encrypted {CONNECTOR_TYPE} connection stored")
    test = ConnectorRegistry.get(CONNECTOR_TYPE).test_connection(config)
    if not test.success:
        print(f"connection test FAILED at {test.stage}: {test.error_message}")
        return 1

    relay_config = RelayConfig(
        database_url=database_url,
        bootstrap_servers=bootstrap_servers,
        topic_prefix=topic_prefix,
        partitions=PARTITIONS,
        retry_tiers=RETRY_TIERS,
        ensure_topics=False,
        client_id=f"{topic_prefix}-relay",
    )
    ensure_relay_topics(relay_config)
    worker_config = WorkerConfig(
        bootstrap_servers=bootstrap_servers,
        database_url=database_url,
        topic_prefix=topic_prefix,
        group_id=f"{topic_prefix}-push",
        client_id=f"{topic_prefix}-push-worker",
        retry_tiers=RETRY_TIERS,
        partitions=PARTITIONS,
        ensure_topics=False,
    )
    relay: OutboxRelay = build_relay(relay_config, RelaySettings(idle_poll_s=0.2))
    worker: PushWorker = build_worker(worker_config, settings=WorkerSettings(poll_timeout_s=0.05))
    results = _Results(org_id)
    reader_stop = threading.Event()
    relay_thread = _Thread("relay", relay.run)
    worker_thread = _Thread(
        "push-worker",
        lambda: run_worker(worker_config, install_signal_handlers=False, worker=worker),
    )
    reader_thread = _Thread(
        "results-reader",
        lambda: _read_results(bootstrap_servers, topics.results, results, reader_stop),
    )
    threads = (relay_thread, worker_thread, reader_thread)
    for thread in threads:
        thread.start()
    print(f"relay, push worker and results reader started on topics {topic_prefix}.*")

    progress = _Progress(orders)
    committed_at: dict[uuid.UUID, float] = {}
    started = time.monotonic()
    broken: _Thread | None = None
    try:
        for index in range(orders):
            draft = _demo_order(org_id, index + 1)
            approve_draft_order(uow, org_id, draft)
            committed_at[draft.id] = time.time()
            progress.show(index + 1, results.count())
        approve_s = time.monotonic() - started
        deadline = time.monotonic() + timeout_s
        while results.count() < orders and time.monotonic() < deadline:
            broken = next((t for t in threads if not t.is_alive()), None)
            if broken is not None:
                break
            progress.show(orders, results.count())
            time.sleep(0.02)
        progress.show(orders, results.count(), final=True)
        elapsed_s = time.monotonic() - started
    finally:
        worker.stop()
        relay.stop()
        reader_stop.set()
        for thread in threads:
            thread.join(STOP_TIMEOUT_S)
    stuck = [t.name for t in threads if t.is_alive()]
    if broken is not None:
        print(f"{broken.name} stopped early: {broken.error!r}")
    if stuck:
        print(f"did not stop within {STOP_TIMEOUT_S:.0f} s: {', '.join(stuck)}")
    if results.count() < orders:
        print(f"timed out: {results.count()} of {orders} PushResults read")

    with results.lock:
        statuses = dict(results.status)
        read_at = dict(results.read_at)
        approved_at = dict(results.approved_at)
        records = results.records
    succeeded = sum(1 for s in statuses.values() if s == "SUCCESS")
    failed = sum(1 for s in statuses.values() if s != "SUCCESS")
    latencies_ms = [
        (read_at[order] - committed_at.get(order, approved_at[order])) * 1000 for order in read_at
    ]
    dlq = _count_records(bootstrap_servers, topics.dlq)
    files = _count_dropzone_files(config, org_id)
    exported_twice = _successful_exports_beyond_one(engine, org_id)
    duplicates = exported_twice + max(0, files - succeeded)
    p50 = _percentile(latencies_ms, 0.50)
    p90 = _percentile(latencies_ms, 0.90)
    p99 = _percentile(latencies_ms, 0.99)

    rows: list[tuple[str, str]] = [
        ("approved", str(len(committed_at))),
        ("results read", f"{len(statuses)} orders ({records} records)"),
        ("succeeded", str(succeeded)),
        ("failed", str(failed)),
        ("dead letters", str(dlq)),
        ("dropzone files", str(files)),
        ("duplicates", str(duplicates)),
        ("approval time", f"{approve_s:.1f} s"),
        ("total time", f"{elapsed_s:.1f} s ({len(statuses) / max(elapsed_s, 1e-9):.0f} orders/s)"),
        ("latency p50", f"{p50:.0f} ms"),
        ("latency p90", f"{p90:.0f} ms"),
        ("latency p99", f"{p99:.0f} ms"),
        ("latency max", f"{max(latencies_ms, default=0.0):.0f} ms"),
        ("worker", ", ".join(f"{k}={v}" for k, v in sorted(worker.stats.items())) or "-"),
        ("relay", f"{relay.stats.marked} events published"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'':-<{width + 2}}{'':-<30}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"{'':-<{width + 2}}{'':-<30}")
    print(
        f"demo: approved={len(committed_at)} succeeded={succeeded} failed={failed} dlq={dlq} "
        f"files={files} duplicates={duplicates} p50_ms={round(p50)} p99_ms={round(p99)}"
    )
    ok = (
        succeeded == orders and files == orders and duplicates == 0 and broken is None and not stuck
    )
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the pipeline demo."""
    parser = argparse.ArgumentParser(
        prog="python -m entrypoints.pipeline_demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=int(os.environ.get("DEMO_ORDERS", "1000")),
        help="how many draft orders to approve (default 1000)",
    )
    parser.add_argument(
        "--topic-prefix",
        default=None,
        help="prefix of this run's topics and consumer group (default demo<random>)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"longest wait for all PushResults, in seconds (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    args = parser.parse_args(argv)
    if args.orders < 1:
        parser.error("--orders must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    prefix = args.topic_prefix or f"demo{uuid.uuid4().hex[:10]}"
    from adapters.kafka.errors import TopicNameError
    from adapters.kafka.topics import TopicNames

    try:
        TopicNames(prefix, retry_tiers=RETRY_TIERS)
    except TopicNameError as exc:
        parser.error(f"--topic-prefix: {exc}")
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return run(args.orders, prefix, args.timeout)
    except SettingsError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
