"""``make demo``: the event pipeline end to end on the local services.

Creates a database of its own next to ``$DATABASE_URL``'s (dropped at the end
unless ``--keep-database``), migrates it, creates an organisation with an encrypted
DROPZONE_JSON_V1 connection to the local SFTP server, starts the outbox relay
and the push worker as their own processes (``orderflow relay`` and
``orderflow consume``, on a topic prefix and consumer group of this run), reads
the results topic, approves N draft orders at a steady rate (each order and its
outbox event in one transaction, nothing else), waits (bounded)
for their N PushResults, stops relay and worker with SIGTERM, and counts the
files that really landed in the SFTP dropzone. The last line is machine-readable::

    demo: approved=N succeeded=N failed=F dlq=D files=N duplicates=0 p50_ms=X p99_ms=Y

Latency is measured per order from the approval's commit to the moment its
PushResult was read from the results topic.

Size: a little over 400 lines, the demo's steps in the order they run (set-up,
processes, approvals, waiting, the report); what bench and chaos share is in
``pipeline_processes`` and ``push_results``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, text

from adapters.postgres import migrate
from adapters.postgres.admin import create_database, drop_database
from adapters.postgres.engine import make_engine
from domain.repositories import UnitOfWork
from entrypoints import bootstrap
from entrypoints.demo_support import (
    ERP_TARGETS,
    ErpTarget,
    create_demo_organisation,
    demo_order,
    ensure_master_key,
    percentile,
    state_dir,
)
from entrypoints.pipeline_processes import (
    ChildProcess,
    ServiceProcessError,
    relay_and_worker,
    require_running,
)
from entrypoints.push_results import PushResults, ReaderThread, read_results
from entrypoints.settings import Settings, SettingsError
from producer.approval import approve_draft_order

_log = logging.getLogger("orderflow.pipeline_demo")

PARTITIONS = 6
RETRY_TIERS = 3
#: Longest wait for the last PushResult, in seconds (``--timeout``).
DEFAULT_TIMEOUT_S = 300.0
#: Longest wait for relay and worker to stop after SIGTERM, and for the reader thread.
STOP_TIMEOUT_S = 30.0
#: Longest wait for relay and worker to report that they are ready.
READY_TIMEOUT_S = 60.0
#: Orders approved by default (``--orders``, ``$DEMO_ORDERS``); fewer for Tryton.
DEFAULT_ORDERS = 1000
DEFAULT_TRYTON_ORDERS = 50
#: Approvals per second by default (``--rate``); 0 approves as fast as possible.
# 25/s is within what one worker exporting over SFTP does on a 2-core machine that
# also runs PostgreSQL, Kafka and sshd (~40/s), so the latency shows the pipeline,
# not a growing queue; --rate 0 shows the throughput instead.
DEFAULT_RATE = 25.0


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


@dataclass(frozen=True)
class DemoOptions:
    """What ``make demo`` was asked to do."""

    orders: int
    topic_prefix: str
    #: Approvals per second; 0 approves as fast as the database allows.
    rate: float = DEFAULT_RATE
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: Where to export: a key of ``ERP_TARGETS`` (``make demo ERP=tryton``).
    erp: str = "dropzone"
    #: Keep the run's own database afterwards (it is dropped by default).
    keep_database: bool = False


def _approve(
    uow: UnitOfWork,
    org_id: uuid.UUID,
    options: DemoOptions,
    results: PushResults,
    progress: _Progress,
    services: Sequence[ChildProcess],
) -> dict[uuid.UUID, float]:
    """Approve ``options.orders`` drafts at ``options.rate``; return each commit time."""
    committed_at: dict[uuid.UUID, float] = {}
    started = time.monotonic()
    for index in range(options.orders):
        if options.rate > 0:
            # Open-loop pacing: order i is due at started + i/rate, however long the
            # previous approvals took, so a slow moment does not lower the load.
            delay = started + index / options.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        draft = demo_order(org_id, index + 1)
        approve_draft_order(uow, org_id, draft)
        committed_at[draft.id] = time.time()
        progress.show(index + 1, results.count())
        if index % 100 == 0:
            require_running(services)
    return committed_at


def _kafka() -> str:
    value = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not value:
        raise SystemExit("demo: KAFKA_BOOTSTRAP_SERVERS is not set; run it through `make demo`")
    return value


def _database_name(topic_prefix: str) -> str:
    """The demo run's own database name (PostgreSQL identifiers: ``[a-z0-9_]``, 63 max)."""
    return re.sub(r"[^a-z0-9_]", "_", f"orderflow_{topic_prefix}".lower())[:63]


def run(options: DemoOptions) -> int:
    """Run the pipeline demo in a database of its own; return the process exit status.

    The run's database is created next to ``$DATABASE_URL``'s (so events an
    earlier or other user of that database left in its outbox do not mix into
    the figures) and dropped at the end unless ``options.keep_database``.
    """
    settings = Settings.from_env()
    server_url = settings.require_database_url()
    _kafka()
    key_source = ensure_master_key(state_dir())
    name = _database_name(options.topic_prefix)
    database_url = create_database(server_url, name)
    try:
        migrate.upgrade(database_url)
        print(f"database {name} created and migrated to {migrate.current_revision(database_url)}")
        print(f"master key: {key_source}")
        engine = make_engine(database_url)
        try:
            return _run(engine, database_url, options)
        except ServiceProcessError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        finally:
            engine.dispose()
    finally:
        if options.keep_database:
            print(f"database {name} kept for inspection (DATABASE_URL of this run: same server)")
        else:
            drop_database(server_url, name)


def _run(engine: Engine, database_url: str, options: DemoOptions) -> int:
    from adapters.kafka.topics import TopicNames, ensure_topics

    bootstrap_servers = _kafka()
    topics = TopicNames(options.topic_prefix, retry_tiers=RETRY_TIERS)
    target = ERP_TARGETS[options.erp]()
    factory = bootstrap.session_factory(engine=engine)
    uow = bootstrap.sql_unit_of_work(session_factory=factory)
    org_id = create_demo_organisation(uow, target.connector_type, target.config)
    if org_id is None:
        return 1

    ensure_topics(bootstrap_servers, topics, partitions=PARTITIONS)
    relay, worker = relay_and_worker(
        database_url,
        bootstrap_servers,
        options.topic_prefix,
        state_dir() / "logs",
        partitions=PARTITIONS,
        retry_tiers=RETRY_TIERS,
        worker_args=target.worker_args,
    )
    results = PushResults(org_id)
    reader_stop = threading.Event()
    reader = ReaderThread(
        "results reader",
        lambda: read_results(bootstrap_servers, topics.results, results, reader_stop),
    )
    progress = _Progress(options.orders)
    started = time.monotonic()
    exits: dict[str, int | None] = {}
    try:
        relay.start()
        worker.start()
        reader.start()
        relay.wait_for_log(r"Relay is the leader|Relay on standby", READY_TIMEOUT_S)
        if "standby" in relay.log_path.read_text(encoding="utf-8", errors="replace"):
            raise ServiceProcessError(
                "another relay holds the leader lock of this database: stop it "
                "(it publishes to its own topic prefix) or use another database"
            )
        worker.wait_for_log(r"Assigned \[", READY_TIMEOUT_S)
        print(
            f"relay (pid {relay.pid}) and push worker (pid {worker.pid}) started on topics "
            f"{options.topic_prefix}.*; logs in {relay.log_path.parent}"
        )
        started = time.monotonic()
        committed_at = _approve(uow, org_id, options, results, progress, (relay, worker))
        approve_s = time.monotonic() - started
        deadline = time.monotonic() + options.timeout_s
        while results.count() < options.orders and time.monotonic() < deadline:
            require_running((relay, worker))
            if not reader.is_alive():
                raise ServiceProcessError(f"results reader stopped: {reader.error!r}")
            progress.show(options.orders, results.count())
            time.sleep(0.02)
        progress.show(options.orders, results.count(), final=True)
        elapsed_s = time.monotonic() - started
    finally:
        # The worker first: its last outcomes still need the relay to reach the topic.
        exits["push worker"] = worker.stop(STOP_TIMEOUT_S)
        exits["relay"] = relay.stop(STOP_TIMEOUT_S)
        reader_stop.set()
        if reader.is_alive():
            reader.join(STOP_TIMEOUT_S)
    unclean = {name: code for name, code in exits.items() if code != 0}
    for name, code in unclean.items():
        how = "was killed: it did not stop" if code is None else f"exited with status {code}"
        print(f"{name} {how} after SIGTERM")
    if results.count() < options.orders:
        print(f"timed out: {results.count()} of {options.orders} PushResults read")
        print(f"relay log:\n{relay.tail()}\npush worker log:\n{worker.tail()}")
    return _report(
        engine,
        target,
        org_id,
        topics.dlq,
        options,
        results,
        committed_at,
        approve_s=approve_s,
        elapsed_s=elapsed_s,
        clean_stop=not unclean,
    )


def _report(
    engine: Engine,
    target: ErpTarget,
    org_id: uuid.UUID,
    dlq_topic: str,
    options: DemoOptions,
    results: PushResults,
    committed_at: dict[uuid.UUID, float],
    *,
    approve_s: float,
    elapsed_s: float,
    clean_stop: bool,
) -> int:
    """Print the summary table and the machine-readable last line; return the exit status."""
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
    dlq = _count_records(_kafka(), dlq_topic)
    files = target.count_documents(org_id)
    exported_twice = _successful_exports_beyond_one(engine, org_id)
    duplicates = exported_twice + max(0, files - succeeded)
    p50 = percentile(latencies_ms, 0.50)
    p99 = percentile(latencies_ms, 0.99)
    rate = f"{options.rate:.0f}/s" if options.rate > 0 else "as fast as possible"
    rows: list[tuple[str, str]] = [
        ("approved", f"{len(committed_at)} in {approve_s:.1f} s (target rate {rate})"),
        ("results read", f"{len(statuses)} orders ({records} records)"),
        ("succeeded", str(succeeded)),
        ("failed", str(failed)),
        ("dead letters", str(dlq)),
        (target.documents, str(files)),
        ("duplicates", str(duplicates)),
        ("total time", f"{elapsed_s:.1f} s ({len(statuses) / max(elapsed_s, 1e-9):.0f} orders/s)"),
        ("latency p50", f"{p50:.0f} ms"),
        ("latency p90", f"{percentile(latencies_ms, 0.90):.0f} ms"),
        ("latency p99", f"{p99:.0f} ms"),
        ("latency max", f"{max(latencies_ms, default=0.0):.0f} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'':-<{width + 2}}{'':-<40}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"{'':-<{width + 2}}{'':-<40}")
    print(
        f"demo: approved={len(committed_at)} succeeded={succeeded} failed={failed} dlq={dlq} "
        f"files={files} duplicates={duplicates} p50_ms={round(p50)} p99_ms={round(p99)}"
    )
    ok = succeeded == options.orders and files == options.orders and duplicates == 0
    return 0 if ok and clean_stop else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the pipeline demo."""
    parser = argparse.ArgumentParser(
        prog="python -m entrypoints.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--erp",
        choices=sorted(ERP_TARGETS),
        default=os.environ.get("ERP") or "dropzone",
        help="where to export: the SFTP dropzone or a local Tryton (default $ERP or dropzone)",
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=None,
        help="how many draft orders to approve (default $DEMO_ORDERS, else 1000; 50 for tryton,"
        " whose SQLite database takes one write at a time)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"approvals per second (default {DEFAULT_RATE:.0f}; 0: as fast as possible)",
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
    parser.add_argument(
        "--keep-database",
        action="store_true",
        help="keep this run's database afterwards to inspect it (dropped by default)",
    )
    args = parser.parse_args(argv)
    if args.orders is None:
        default = DEFAULT_ORDERS if args.erp != "tryton" else DEFAULT_TRYTON_ORDERS
        args.orders = int(os.environ.get("DEMO_ORDERS") or default)
    if args.orders < 1:
        parser.error("--orders must be at least 1")
    if args.rate < 0:
        parser.error("--rate must be 0 or positive")
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
    options = DemoOptions(
        orders=args.orders,
        topic_prefix=prefix,
        rate=args.rate,
        timeout_s=args.timeout,
        keep_database=args.keep_database,
        erp=args.erp,
    )
    try:
        return run(options)
    except SettingsError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
