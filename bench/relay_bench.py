"""Relay benchmarks: throughput against the textbook relay, peak memory, idle cost.

Our relay runs as ``orderflow relay --drain`` (a child process: it
exits once the outbox is empty); its rate is read from the outside, from the
``outbox_published.published_at`` times it wrote: rows after its first completed batch divided
by the time from that batch to its last, so interpreter start-up and topic
metadata are not counted (the wall time, start-up included, is reported too).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from adapters.kafka.topics import TopicNames, ensure_topics
from adapters.postgres.outbox_relay import RELAY_APPLICATION_NAME
from bench.procs import MeasuredRun, python_module, run_measured
from bench.workload import (
    Services,
    connect,
    count_unpublished,
    fill_backlog,
    published_times,
    scratch_database,
    service_args,
)
from entrypoints.pipeline_processes import ORDERFLOW_MODULE, ChildProcess

PARTITIONS = 6
#: Longest a drain may take before the harness kills the relay.
DRAIN_TIMEOUT_S = 3600.0


def new_prefix(kind: str) -> str:
    """A topic prefix of its own for one measurement."""
    return f"bench{kind}{uuid.uuid4().hex[:8]}"


def relay_args(services: Services, database_url: str, prefix: str, *extra: str) -> list[str]:
    """The arguments of our relay on ``database_url`` and the topics of ``prefix``."""
    return [
        *service_args(services, database_url, prefix),
        "--partitions",
        str(PARTITIONS),
        "--no-ensure-topics",
        *extra,
    ]


@dataclass
class DrainResult:
    """Our relay draining a backlog."""

    events: int
    events_per_s: float
    run: MeasuredRun
    #: ``(epoch seconds, rows)`` per publish time (for the throughput plot).
    published: list[tuple[float, int]] = field(default_factory=list)


def drain_rate(published: list[tuple[float, int]], since: float) -> tuple[int, float]:
    """``(rows, rows/s)`` published at or after ``since``, timed from the first batch."""
    mine = [(t, n) for t, n in published if t >= since]
    if len(mine) < 2:
        return sum(n for _, n in mine), 0.0
    rows = sum(n for _, n in mine)
    first_t, first_n = mine[0]
    span = mine[-1][0] - first_t
    return rows, (rows - first_n) / span if span > 0 else 0.0


def drain_with_ours(
    services: Services,
    database_url: str,
    prefix: str,
    log: Path,
    stop_after_s: float | None = None,
) -> DrainResult:
    """Drain the backlog of ``database_url`` with ``orderflow relay --drain``.

    With ``stop_after_s`` the relay is stopped (SIGTERM) then if not done yet.
    """
    since = time.time()
    run = run_measured(
        python_module(
            ORDERFLOW_MODULE,
            "relay",
            *relay_args(services, database_url, prefix, "--drain", "--log-level", "INFO"),
        ),
        log,
        timeout_s=DRAIN_TIMEOUT_S,
        stop_after_s=stop_after_s,
    )
    if run.returncode != 0:
        raise RuntimeError(f"relay exited with {run.returncode}:\n{run.tail()}")
    left = count_unpublished(database_url)
    if left and stop_after_s is None:
        raise RuntimeError(f"relay --drain exited with {left} events unpublished")
    published = [(t, n) for t, n in published_times(database_url) if t >= since]
    rows, rate = drain_rate(published, since)
    return DrainResult(rows, rate, run, published)


def run_textbook(
    services: Services, database_url: str, prefix: str, max_rows: int, max_seconds: float
) -> dict[str, float]:
    """The textbook relay (``bench/textbook_relay.py``) as a child process; its JSON result."""
    completed = subprocess.run(
        python_module(
            "bench.textbook_relay",
            *service_args(services, database_url, prefix),
            "--max-rows",
            str(max_rows),
            "--max-seconds",
            str(max_seconds),
        ),
        capture_output=True,
        text=True,
        timeout=max_seconds + 120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"textbook relay failed:\n{completed.stderr[-3000:]}")
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def throughput(
    services: Services,
    events: int,
    textbook_rows: int,
    textbook_seconds: float,
    logs: Path,
    progress: Any = print,
) -> tuple[dict[str, Any], DrainResult]:
    """Fill ``events``, let the textbook relay publish its share, drain the rest with ours."""
    with scratch_database(services) as url:
        started = time.monotonic()
        payload = fill_backlog(url, uuid.uuid4(), events)
        fill_s = time.monotonic() - started
        progress(f"relay: backlog of {events} events (~{payload} B payload) in {fill_s:.1f} s")
        prefix = new_prefix("r")
        ensure_topics(services.bootstrap_servers, TopicNames(prefix), partitions=PARTITIONS)
        textbook = run_textbook(services, url, prefix, textbook_rows, textbook_seconds)
        progress(
            f"relay: textbook {textbook['rows']:.0f} events at {textbook['events_per_s']:.0f}/s"
        )
        ours = drain_with_ours(services, url, prefix, logs / "relay-throughput.log")
        progress(
            f"relay: ours {ours.events} events at {ours.events_per_s:.0f}/s "
            f"(wall {ours.run.wall_s:.1f} s with start-up)"
        )
    return (
        {
            "backlog_events": events,
            "payload_bytes": payload,
            "events_per_s": ours.events_per_s,
            "events_drained": ours.events,
            "drain_wall_s": ours.run.wall_s,
            "baseline_events_per_s": textbook["events_per_s"],
            "baseline_events": textbook["rows"],
            "peak_rss_mb_backlog": ours.run.peak_rss_mb,
        },
        ours,
    )


def memory(
    services: Services,
    events: int,
    logs: Path,
    progress: Any = print,
    max_s: float | None = None,
) -> DrainResult:
    """Peak RSS of our relay draining a backlog of ``events`` (stopped after ``max_s``)."""
    with scratch_database(services) as url:
        started = time.monotonic()
        fill_backlog(url, uuid.uuid4(), events)
        progress(f"relay: backlog of {events} events in {time.monotonic() - started:.1f} s")
        prefix = new_prefix("m")
        ensure_topics(services.bootstrap_servers, TopicNames(prefix), partitions=PARTITIONS)
        result = drain_with_ours(services, url, prefix, logs / "relay-memory.log", max_s)
        progress(
            f"relay: drained {result.events} events, peak RSS {result.run.peak_rss_mb:.0f} MiB, "
            f"{result.events_per_s:.0f}/s"
        )
        return result


def _transactions(admin: Any, database: str) -> int:
    with admin.cursor() as cur:
        cur.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database,),
        )
        return int(cur.fetchone()[0])


#: How often the idle benchmark samples the relay's backend in ``pg_stat_activity``.
IDLE_SAMPLE_S = 0.005

_RELAY_BACKEND_SQL = (
    "SELECT pid, query_start FROM pg_stat_activity"
    " WHERE datname = %s AND application_name = %s AND backend_type = 'client backend'"
)


def count_statements(
    admin: Any, database: str, application: str, seconds: float, every: float = IDLE_SAMPLE_S
) -> tuple[int, float]:
    """``(statements, seconds)`` the relay's own sessions ran, as PostgreSQL saw them.

    Samples ``pg_stat_activity`` (live backend state, not the delayed statistics)
    every ``every`` s: each statement a backend starts gets a new ``query_start``,
    so the distinct values per backend count its statements. Only sessions of
    ``database`` named ``application`` count (not autovacuum, not this admin
    session, which lives in another database). Two statements of one session
    within ``every`` s would count once: an idle relay sends one claim per
    ``idle_poll_s``, far apart.
    """
    seen: dict[int, set[Any]] = {}
    started = time.monotonic()
    deadline = started + seconds
    with admin.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute(_RELAY_BACKEND_SQL, (database, application))
            for pid, query_start in cur.fetchall():
                if query_start is not None:
                    seen.setdefault(pid, set()).add(query_start)
            time.sleep(every)
    elapsed = time.monotonic() - started
    # The first sample only shows the statement that ran before the window.
    return sum(max(len(starts) - 1, 0) for starts in seen.values()), elapsed


def idle_cost(services: Services, seconds: float, logs: Path) -> dict[str, float]:
    """Statements/s of an idle relay: its own, counted by PostgreSQL; also the DB's total.

    ``idle_queries_per_s`` counts the relay session's statements server-side
    (:func:`count_statements`). ``idle_db_transactions_per_s`` is every
    transaction of the relay's otherwise empty scratch database
    (``pg_stat_database``), an upper bound that also counts autovacuum and
    statistics work the relay does not cause.
    """
    with scratch_database(services) as url:
        name = make_url(url).database
        assert name is not None
        prefix = new_prefix("i")
        ensure_topics(services.bootstrap_servers, TopicNames(prefix), partitions=PARTITIONS)
        admin_url = make_url(url).set(database="postgres").render_as_string(hide_password=False)
        admin = connect(admin_url)
        relay = ChildProcess(
            "relay",
            ORDERFLOW_MODULE,
            ["relay", *relay_args(services, url, prefix)],
            logs / "relay-idle.log",
        )
        try:
            relay.start()
            relay.wait_for_log(r"Relay is the leader", 60.0)
            time.sleep(3.0)  # settle: start-up statements are not idle cost
            before, t0 = _transactions(admin, name), time.monotonic()
            statements, window = count_statements(admin, name, RELAY_APPLICATION_NAME, seconds)
            after, t1 = _transactions(admin, name), time.monotonic()
        finally:
            relay.stop(30.0)
            admin.close()
    return {
        "idle_queries_per_s": statements / window,
        "idle_window_s": window,
        "idle_db_transactions_per_s": (after - before) / (t1 - t0),
    }
