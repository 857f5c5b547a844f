"""``make chaos`` / ``make chaos-quick``: N orders through the real pipeline while it is hurt.

On a PRIVATE local infrastructure instance (its own state dir, default
``.infra-chaos/``: PostgreSQL, Apache Kafka, OpenSSH SFTP, started here and
stopped at the end) the harness creates an organisation with a
``DROPZONE_JSON_V1`` connection, starts one relay and two push workers (one
consumer group) as their own processes, and approves N draft orders at a
steady rate. Meanwhile a seeded schedule injects the faults of
:data:`chaos.faults.FAULT_KINDS` at random moments: the relay and a worker are
SIGKILLed three times each and restarted, the Kafka broker and PostgreSQL are
restarted once, the SFTP server is down for 10 s. An approval that raised
(PostgreSQL down) may or may not have committed: the approver looks the order
up by id before it retries. About 1 % of the orders are approved a second time,
which must be refused.

Once every order has a PushResult (bounded wait after the last fault), relay
and workers are stopped and the run is judged from the outside
(:mod:`chaos.observe`, :mod:`chaos.checker`). A progress line per fault, a
summary table, and the last line::

    chaos: orders=N lost=0 duplicate_exports=0 order_violations=0 wire_duplicates=W faults=K

The exit status is 0 only if lost, duplicate_exports and order_violations are
0, every fault was injected and no process died on its own or refused to stop.
``--seed S`` replays the fault schedule of a run.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from chaos.checker import DLQ, REQUESTS, RESULTS, RETRY, Observations, Verdict, check
from chaos.faults import FAULT_KINDS, Faults, Fleet, ensure_up_patiently
from chaos.observe import (
    TOPIC_PREFIX,
    DropzoneWatcher,
    ResultsProgress,
    delete_topics,
    follow_results,
    list_dropzone,
    read_push_log,
    read_wire,
    stale_topics,
)
from domain.model import DraftOrder, DraftOrderStatus
from domain.repositories import UnitOfWork
from entrypoints.demo_support import (
    CONNECTOR_TYPE,
    count_dropzone_files,
    create_demo_organisation,
    demo_order,
    dropzone_config,
    ensure_master_key,
)
from entrypoints.pipeline_processes import ServiceProcessError
from infra.local import InfraError

_log = logging.getLogger("orderflow.chaos")

PARTITIONS = 6
RETRY_TIERS = 3
#: Retries after a transient error: 1+2+4+8+16 s outlasts the 10 s SFTP outage.
MAX_RETRIES = 5
#: Claims of a SIGKILLed worker are taken over after this (the connector timeout is 10 s).
LEASE_SECONDS = 30.0
#: Share of orders approved a second time (must be refused: OrderAlreadyApproved).
REAPPROVE_SHARE = 0.01
STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Mode:
    """Size and pace of a run."""

    orders: int
    #: Seconds over which the approvals are spread (the faults fall inside).
    duration_s: float
    #: Longest wait for the last PushResult after the last fault.
    timeout_s: float


QUICK = Mode(orders=2_000, duration_s=120.0, timeout_s=240.0)
FULL = Mode(orders=10_000, duration_s=360.0, timeout_s=420.0)


@dataclass
class ApprovalStats:
    """What the approver did."""

    approved: list[uuid.UUID] = field(default_factory=list)
    retried: int = 0
    #: Approvals that raised but had committed (found by id before retrying).
    committed_despite_error: int = 0
    reapproved_refused: int = 0
    reapproved_accepted: int = 0
    reapprove_skipped: int = 0
    seconds: float = 0.0


def _emit(line: str) -> None:
    print(line, flush=True)


class Approver:
    """Approves draft orders one by one, retrying through database outages without doubling."""

    def __init__(self, engine: Engine, org_id: uuid.UUID, stats: ApprovalStats) -> None:
        from entrypoints import bootstrap

        self._factory = bootstrap.session_factory(engine=engine)
        self.org_id = org_id
        self.stats = stats

    def _uow(self) -> UnitOfWork:
        from entrypoints import bootstrap

        return bootstrap.sql_unit_of_work(session_factory=self._factory)

    def _status(self, order_id: uuid.UUID) -> DraftOrderStatus | None:
        with self._uow() as uow:
            order = uow.draft_orders.get(self.org_id, order_id)
        return order.status if order is not None else None

    def approve(self, draft: DraftOrder, deadline: float) -> None:
        """Approve ``draft``; after an error, check by id whether it committed, else retry."""
        from producer.approval import OrderAlreadyApproved, approve_draft_order

        backoff = 0.2
        while True:
            try:
                approve_draft_order(self._uow(), self.org_id, draft)
                return
            except OrderAlreadyApproved:
                # Only our own earlier try can have approved it: it had committed.
                self.stats.committed_despite_error += 1
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                self.stats.retried += 1
                _log.info("Approval of %s raised %s; checking it", draft.id, type(exc).__name__)
            while True:
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                try:
                    status = self._status(draft.id)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
            if status is DraftOrderStatus.APPROVED:
                self.stats.committed_despite_error += 1
                return

    def reapprove(self, draft: DraftOrder) -> None:
        """Approve an approved order again: it must be refused."""
        from producer.approval import OrderAlreadyApproved, approve_draft_order

        try:
            approve_draft_order(self._uow(), self.org_id, draft)
        except OrderAlreadyApproved:
            self.stats.reapproved_refused += 1
        except Exception:
            self.stats.reapprove_skipped += 1  # database down: nothing was written
        else:
            self.stats.reapproved_accepted += 1


@dataclass
class FaultLog:
    """Faults injected so far (filled by the fault thread)."""

    done: int = 0
    errors: list[str] = field(default_factory=list)
    finished_at: float | None = None


def _schedule(rng: random.Random, duration_s: float) -> list[tuple[float, str]]:
    """Random moments (seconds after the first approval) and the shuffled fault kinds."""
    kinds = list(FAULT_KINDS)
    rng.shuffle(kinds)
    moments = sorted(rng.uniform(0.08, 0.85) * duration_s for _ in kinds)
    return list(zip(moments, kinds, strict=True))


def _run_faults(
    faults: Faults,
    schedule: Sequence[tuple[float, str]],
    t0: float,
    log: FaultLog,
    stop: threading.Event,
) -> None:
    total = len(schedule)
    for number, (moment, kind) in enumerate(schedule, start=1):
        if stop.wait(max(0.0, t0 + moment - time.monotonic())):
            break
        began = time.monotonic()
        try:
            what = faults.inject(kind)
        except Exception as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            log.errors.append(f"{kind}: {type(exc).__name__}: {first_line}")
            _emit(f"chaos: fault {number}/{total} at +{began - t0:.1f}s {kind} FAILED: {exc}")
            continue
        log.done += 1
        _emit(
            f"chaos: fault {number}/{total} at +{began - t0:.1f}s {kind}: {what} "
            f"({time.monotonic() - began:.1f} s)"
        )
    log.finished_at = time.monotonic()


def _table(rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    rule = "-" * (width + 2 + 50)
    _emit(rule)
    for name, value in rows:
        _emit(f"{name:<{width}}  {value}")
    _emit(rule)


def run(mode: Mode, seed: int, state_dir: Path, topic_prefix: str) -> int:
    """Run one chaos run; return the exit status. The private infrastructure stops at the end."""
    from infra import local

    _emit(f"chaos: seed={seed} (replay with --seed {seed}); {mode.orders} orders")
    _emit(f"chaos: private infrastructure in {state_dir}")
    try:
        return _run(mode, seed, state_dir, topic_prefix)
    finally:
        try:
            local.down(state_dir=state_dir)
        except Exception as exc:  # reported, not fatal: the verdict stands
            print(f"chaos: stopping the private infrastructure failed: {exc}", file=sys.stderr)


def _run(mode: Mode, seed: int, state_dir: Path, topic_prefix: str) -> int:
    from adapters.kafka.topics import TopicNames, ensure_topics
    from adapters.postgres import migrate
    from adapters.postgres.engine import make_engine
    from entrypoints import bootstrap

    started = time.monotonic()
    endpoints = ensure_up_patiently(
        None, state_dir, progress=lambda message: _emit(f"chaos: infra {message}")
    )
    os.environ.update(endpoints.as_env())
    ensure_master_key(state_dir)
    database_url = endpoints.database_url
    bootstrap_servers = endpoints.kafka_bootstrap_servers
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    fleet: Fleet | None = None
    fleet_stopped = False
    watcher: DropzoneWatcher | None = None
    follower_stop = threading.Event()
    fault_stop = threading.Event()
    try:
        config = dropzone_config()
        uow = bootstrap.sql_unit_of_work(session_factory=bootstrap.session_factory(engine=engine))
        created = create_demo_organisation(uow, CONNECTOR_TYPE, config)
        if created is None:
            _emit("chaos: aborted: the dropzone connection test failed")
            return 1
        org_id = created
        topics = TopicNames(topic_prefix, retry_tiers=RETRY_TIERS)
        delete_topics(bootstrap_servers, stale_topics(bootstrap_servers))  # of red runs
        ensure_topics(bootstrap_servers, topics, partitions=PARTITIONS)
        common = [
            "--database-url", database_url,
            "--bootstrap-servers", bootstrap_servers,
            "--topic-prefix", topic_prefix,
            "--partitions", str(PARTITIONS),
            "--no-ensure-topics",
        ]  # fmt: skip
        worker_args = [
            "--group", f"{topic_prefix}-push",
            "--retry-tiers", str(RETRY_TIERS),
            "--max-retries", str(MAX_RETRIES),
            "--lease-seconds", str(LEASE_SECONDS),
        ]  # fmt: skip
        logs = state_dir / "logs" / topic_prefix
        fleet = Fleet(common, worker_args, logs, instance_prefix=f"{topic_prefix}-worker")
        fleet.start()
        _emit(
            f"chaos: organisation {org_id}; relay and 2 push workers started on "
            f"{topic_prefix}.*; logs in {logs}"
        )
        dropzone = Path(endpoints.sftp_dropzone_dir) / str(org_id)
        watcher = DropzoneWatcher(dropzone).start()
        progress = ResultsProgress(set(), threading.Lock())
        follower = threading.Thread(
            target=follow_results,
            args=(bootstrap_servers, topics.results, progress, follower_stop),
            name="results follower",
            daemon=True,
        )
        follower.start()

        rng = random.Random(seed)
        schedule = _schedule(rng, mode.duration_s)
        faults = Faults(fleet, state_dir, engine, org_id, choose=rng.choice)
        fault_log = FaultLog()
        stats = ApprovalStats()
        approver = Approver(engine, org_id, stats)
        t0 = time.monotonic()
        fault_thread = threading.Thread(
            target=_run_faults,
            args=(faults, schedule, t0, fault_log, fault_stop),
            name="faults",
            daemon=True,
        )
        fault_thread.start()
        rate = mode.orders / mode.duration_s
        reapprove_rng = random.Random(seed + 1)
        drafts: list[DraftOrder] = []
        for index in range(mode.orders):
            delay = t0 + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            draft = demo_order(org_id, index + 1)
            approver.approve(draft, deadline=time.monotonic() + 300)
            stats.approved.append(draft.id)
            drafts.append(draft)
            if reapprove_rng.random() < REAPPROVE_SHARE:
                approver.reapprove(reapprove_rng.choice(drafts))
            if index % 50 == 0:
                fleet.watch(_emit)
            if index and index % max(1, mode.orders // 10) == 0:
                _emit(
                    f"chaos: +{time.monotonic() - t0:.0f}s approved {index}/{mode.orders}, "
                    f"results {progress.count()}"
                )
        stats.seconds = time.monotonic() - t0
        _emit(f"chaos: {mode.orders} orders approved in {stats.seconds:.0f} s; waiting for faults")
        while fault_thread.is_alive():
            fleet.watch(_emit)
            fault_thread.join(1.0)
        last_fault = fault_log.finished_at or time.monotonic()
        deadline = last_fault + mode.timeout_s
        _emit(f"chaos: all faults done; waiting up to {mode.timeout_s:.0f} s for every result")
        last_report = 0.0
        while progress.count() < mode.orders and time.monotonic() < deadline:
            fleet.watch(_emit)
            if time.monotonic() - last_report > 15:
                last_report = time.monotonic()
                _emit(f"chaos: +{last_report - t0:.0f}s results {progress.count()}/{mode.orders}")
            time.sleep(0.5)
        completed = time.monotonic() - t0
        if progress.count() < mode.orders:
            _emit(f"chaos: timed out: {progress.count()} of {mode.orders} orders have a result")
        exits = fleet.stop(STOP_TIMEOUT_S)
        fleet_stopped = True
        follower_stop.set()
        follower.join(30)
        watcher.stop()

        wire = read_wire(
            bootstrap_servers,
            {
                REQUESTS: [topics.requests],
                RETRY: list(topics.retry_topics),
                RESULTS: [topics.results],
                DLQ: [topics.dlq],
            },
        )
        push_log = read_push_log(engine, org_id)
        files, temporary = list_dropzone(dropzone, watcher.versions)
        over_sftp = count_dropzone_files(config, org_id)
        verdict = check(Observations(frozenset(stats.approved), wire, push_log, files))
        unclean = {name: code for name, code in exits.items() if code != 0}
        _report(
            verdict,
            stats,
            fault_log,
            fleet,
            unclean,
            seed=seed,
            files_over_sftp=over_sftp,
            temporary=temporary,
            completed_s=completed,
            total_s=time.monotonic() - started,
        )
        ok = (
            verdict.ok
            and fault_log.done == len(FAULT_KINDS)
            and not fleet.unexpected_exits
            and not unclean
            and over_sftp == verdict.files
        )
        if ok:
            delete_topics(bootstrap_servers, topics.all())  # a red run keeps them to look at
        _emit(verdict.line(fault_log.done))
        return 0 if ok else 1
    finally:
        fault_stop.set()
        follower_stop.set()
        if fleet is not None and not fleet_stopped:
            fleet.stop(STOP_TIMEOUT_S)
        engine.dispose()


def _report(
    verdict: Verdict,
    stats: ApprovalStats,
    fault_log: FaultLog,
    fleet: Fleet,
    unclean: dict[str, int | None],
    *,
    seed: int,
    files_over_sftp: int,
    temporary: int,
    completed_s: float,
    total_s: float,
) -> None:
    records = verdict.records
    rows: list[tuple[str, str]] = [
        ("seed", str(seed)),
        ("orders approved", f"{len(stats.approved)} in {stats.seconds:.0f} s"),
        (
            "approval retries",
            f"{stats.retried} (committed despite the error: {stats.committed_despite_error})",
        ),
        (
            "second approvals",
            f"{stats.reapproved_refused} refused, {stats.reapproved_accepted} accepted, "
            f"{stats.reapprove_skipped} skipped (database down)",
        ),
        ("faults injected", f"{fault_log.done} of {len(FAULT_KINDS)}"),
        ("succeeded", str(verdict.succeeded)),
        ("failed (final)", str(verdict.failed)),
        ("dropzone files", f"{verdict.files} on disk, {files_over_sftp} over SFTP"),
        ("temporary files left", str(temporary)),
        ("re-uploads before SUCCESS", str(verdict.re_uploads)),
        (
            "records",
            f"requests {records.get(REQUESTS, 0)}, retry {records.get(RETRY, 0)}, "
            f"results {records.get(RESULTS, 0)}, dlq {records.get(DLQ, 0)}",
        ),
        ("wire duplicates", str(verdict.wire_duplicates)),
        ("lost", str(verdict.lost)),
        ("duplicate exports", str(verdict.duplicate_exports)),
        ("order violations", str(verdict.order_violations)),
        ("all results after", f"{completed_s:.0f} s; whole run {total_s:.0f} s"),
    ]
    for reason, count in verdict.reasons.items():
        examples = ", ".join(str(o) for o in verdict.examples.get(reason, ()))
        rows.append((f"  {reason}", f"{count} (e.g. {examples})"))
    for error in fault_log.errors:
        rows.append(("fault error", error))
    for exit_ in fleet.unexpected_exits:
        rows.append(("unexpected exit", exit_))
    for name, code in unclean.items():
        how = "killed: did not stop" if code is None else f"exit status {code}"
        rows.append(("unclean stop", f"{name}: {how} after SIGTERM"))
    _table(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the chaos harness."""
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="2,000 orders in about 5 minutes (CI)")
    parser.add_argument("--orders", type=int, help="number of orders (10,000; --quick 2,000)")
    parser.add_argument("--duration", type=float, help="seconds over which to approve them")
    parser.add_argument("--timeout", type=float, help="longest wait for results after the faults")
    parser.add_argument("--seed", type=int, help="seed of the fault schedule (default: random)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(__file__).resolve().parent.parent / ".infra-chaos",
        help="state dir of the private infrastructure instance (<repo>/.infra-chaos)",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    mode = Mode(
        orders=args.orders or base.orders,
        duration_s=args.duration or base.duration_s,
        timeout_s=args.timeout or base.timeout_s,
    )
    if mode.orders < 1 or mode.duration_s <= 0 or mode.timeout_s <= 0:
        parser.error("--orders, --duration and --timeout must be positive")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Broker restarts are part of the run: librdkafka's connection errors are expected noise.
    logging.getLogger("adapters.kafka.librdkafka").setLevel(logging.CRITICAL)
    prefix = f"{TOPIC_PREFIX}{uuid.uuid4().hex[:10]}"
    try:
        return run(mode, seed, args.state_dir.resolve(), prefix)
    except (ServiceProcessError, InfraError) as exc:
        _emit(f"chaos: aborted: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
