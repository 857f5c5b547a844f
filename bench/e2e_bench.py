"""End-to-end latency: open-loop approvals -> relay -> Kafka -> worker (MOCK, 0 ms) -> PushResult.

Reuses the pipeline's process pieces (``entrypoints.pipeline_processes``,
``entrypoints.push_results``): relay and push worker as child processes, the
results-topic reader; approvals come from ``bench.approver``. Latency per
order: from the approval's call (``approve_draft_order``, one statement and its
COMMIT, which a time taken after the call could follow) to the moment its
PushResult was read from the results topic. Orders whose PushResult never came
are counted (``missing_results``), not folded into the percentiles. Beside the
latency: the approver's capacity alone and its lateness against the schedule
(an approver that cannot keep up lowers the load it claims to apply), the CPU
per order of approver, relay and worker, and the latency of each hop
(``bench.e2e_hops``).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.kafka.topics import TopicNames, ensure_topics
from bench import e2e_hops
from bench.procs import python_module
from bench.relay_bench import PARTITIONS, new_prefix
from bench.stats import latency_summary, steady_rate
from bench.workload import Services, add_mock_connection, scratch_database
from entrypoints.demo import RETRY_TIERS
from entrypoints.pipeline_processes import relay_and_worker, require_running
from entrypoints.push_results import PushResults, ReaderThread, read_results

#: Longest wait for the last PushResult after the last approval.
SETTLE_TIMEOUT_S = 120.0
#: Approving threads of the approver process.
APPROVERS = 2
#: Approvals of the approver-alone measurement (closed loop, no relay or worker).
ALONE_ORDERS = 2000


@dataclass
class ApproverRun:
    """What ``bench.approver`` reported: each order's call and return time, start lateness.

    ``committed`` maps an order to the time its approval was called (before its
    COMMIT); ``returned`` to the time the call returned (after it).
    """

    committed: dict[uuid.UUID, float]
    late_ms: list[float]
    cpu_s: float
    returned: dict[uuid.UUID, float] = field(default_factory=dict)

    def call_ms(self) -> list[float]:
        """How long each approval call took (statement and COMMIT), in ms."""
        return [
            (self.returned[o] - t) * 1000 for o, t in self.committed.items() if o in self.returned
        ]


def parse_approver_output(stdout: str) -> ApproverRun:
    """Parse ``bench.approver``'s lines (``<order> <called> <returned> <late ms>``, ``# cpu_s``)."""
    run = ApproverRun({}, [], 0.0)
    for line in stdout.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "#":
            if fields[1:2] == ["cpu_s"]:
                run.cpu_s = float(fields[2])
            continue
        order = uuid.UUID(fields[0])
        run.committed[order] = float(fields[1])
        run.returned[order] = float(fields[2])
        run.late_ms.append(float(fields[3]))
    return run


def _approve(
    database_url: str, org_id: uuid.UUID, orders: int, rate: float, max_seconds: float
) -> ApproverRun:
    """Run ``bench.approver`` (its own process); return what it reported."""
    completed = subprocess.run(
        python_module(
            "bench.approver",
            "--database-url",
            database_url,
            "--org",
            str(org_id),
            "--orders",
            str(orders),
            "--rate",
            str(rate),
            "--threads",
            str(APPROVERS),
            "--max-seconds",
            str(max_seconds),
        ),
        capture_output=True,
        text=True,
        timeout=max_seconds * 5 + 120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"approver failed:\n{completed.stderr[-3000:]}")
    return parse_approver_output(completed.stdout)


def approver_alone(services: Services, orders: int = ALONE_ORDERS) -> dict[str, float]:
    """The approver's capacity: approvals/s with no pacing, nothing else of the pipeline running.

    Same process, threads and database server as in the end-to-end run, on a
    scratch database of its own (no relay or worker competing for the CPU).
    """
    with scratch_database(services) as url:
        run = _approve(url, uuid.uuid4(), orders, 0.0, max_seconds=60.0)
    return {
        "approver_alone_per_s": steady_rate(run.committed.values()),
        "approver_alone_cpu_ms_per_approval": run.cpu_s * 1000 / max(1, len(run.committed)),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14 and 15 of proc(5) (utime, stime), counted after the ")" of the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """``(busy, total)`` jiffies of every CPU from ``/proc/stat``."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class E2EResult:
    """Latencies and the time series of one end-to-end run."""

    summary: dict[str, Any]
    latencies_ms: list[float] = field(default_factory=list)
    approved_at: list[float] = field(default_factory=list)
    result_at: list[float] = field(default_factory=list)
    hops: dict[str, dict[str, float]] = field(default_factory=dict)


def run_e2e(
    services: Services,
    rate: float,
    seconds: float,
    logs: Path,
    progress: Any = print,
    *,
    measure_alone: bool = True,
) -> E2EResult:
    """Approve ``rate``/s for ``seconds`` (open loop) and measure every order's latency.

    Also measured: the approver's capacity alone (``measure_alone``), its
    lateness against the schedule, the CPU the approver, relay and worker
    spent, and the latency of every hop (``bench.e2e_hops``).
    """
    orders = max(1, round(rate * seconds))
    alone: dict[str, float] = {}
    if measure_alone:
        alone = approver_alone(services)
        progress(f"e2e: the approver alone commits {alone['approver_alone_per_s']:.0f}/s")
    prefix = new_prefix("e")
    topics = TopicNames(prefix, retry_tiers=RETRY_TIERS)
    with scratch_database(services) as url:
        org_id = uuid.uuid4()
        add_mock_connection(url, org_id, latency_ms=0)
        ensure_topics(services.bootstrap_servers, topics, partitions=PARTITIONS)
        relay, worker = relay_and_worker(
            url,
            services.bootstrap_servers,
            prefix,
            logs,
            partitions=PARTITIONS,
            retry_tiers=RETRY_TIERS,
            log_name="e2e",
        )
        results = PushResults(org_id)
        stop = threading.Event()
        servers = services.bootstrap_servers
        reader = ReaderThread(
            "results reader", lambda: read_results(servers, topics.results, results, stop)
        )
        try:
            relay.start()
            worker.start()
            reader.start()
            relay.wait_for_log(r"Relay is the leader", 60.0)
            worker.wait_for_log(r"Assigned \[", 60.0)
            time.sleep(2.0)  # the reader's group joins too
            progress(f"e2e: {orders} approvals at {rate:.0f}/s")
            cpu_before = {p.name: _cpu_seconds(p.pid) for p in (relay, worker)}
            busy_before = _machine_busy()
            approved = _approve(url, org_id, orders, rate, orders / rate * 1.5 + 5)
            committed = approved.committed
            require_running((relay, worker))
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while results.count() < len(committed) and time.monotonic() < deadline:
                require_running((relay, worker))
                time.sleep(0.05)
            cpu = {p.name: _cpu_seconds(p.pid) - cpu_before[p.name] for p in (relay, worker)}
            busy_after = _machine_busy()
        finally:
            worker.stop(30.0)
            relay.stop(30.0)
            stop.set()
            reader.join(30.0)
        with results.lock:
            read_at = dict(results.read_at)
        # Before the scratch database is dropped: it holds half of the stamps.
        stamps = e2e_hops.collect(
            url, servers, org_id, topics.requests, topics.results, committed, read_at
        )
    hops = e2e_hops.hop_breakdown(e2e_hops.only(stamps, committed))
    latencies = [(read_at[o] - committed[o]) * 1000 for o in read_at if o in committed]
    missing = sum(1 for o in committed if o not in read_at)
    summary: dict[str, Any] = latency_summary(latencies)
    summary["orders"] = len(committed)
    summary["orders_scheduled"] = orders
    summary["results"] = len(read_at)
    # Orders approved whose PushResult was not read before the settle timeout: the
    # percentiles above do not include them (they would be larger than any of them).
    summary["missing_results"] = missing
    summary["rate_per_s"] = rate
    # Open loop, but on a busy machine the approver itself may fall behind the schedule.
    summary["achieved_rate_per_s"] = steady_rate(committed.values())
    late = latency_summary(approved.late_ms)
    summary["approver_late_p50_ms"] = late["p50_ms"]
    summary["approver_late_p99_ms"] = late["p99_ms"]
    call = latency_summary(approved.call_ms())
    summary["approval_call_p50_ms"] = call["p50_ms"]
    summary["approval_call_p99_ms"] = call["p99_ms"]
    summary.update(alone)
    n = max(1, len(committed))
    summary["cpu_ms_per_order"] = {
        "approver": approved.cpu_s * 1000 / n,
        **{name.replace(" ", "_"): seconds * 1000 / n for name, seconds in cpu.items()},
    }
    summary["cpu_ms_per_order_total"] = sum(summary["cpu_ms_per_order"].values())
    busy = busy_after[0] - busy_before[0]
    summary["machine_busy_fraction"] = busy / max(1, busy_after[1] - busy_before[1])
    summary["seconds"] = seconds
    summary["hops"] = {name: {k: round(v, 2) for k, v in h.items()} for name, h in hops.items()}
    if len(committed) < orders:
        progress(f"e2e: the approver fell behind: {len(committed)} of {orders} approved in time")
    if missing:
        progress(f"e2e: {missing} of {len(committed)} PushResults MISSING after the settle time")
    progress(
        f"e2e: {len(read_at)}/{len(committed)} results, p50 {summary['p50_ms']:.1f} ms, "
        f"p99 {summary['p99_ms']:.1f} ms, max {summary['max_ms']:.1f} ms; approvals at "
        f"{summary['achieved_rate_per_s']:.0f}/s (start lateness p99 "
        f"{summary['approver_late_p99_ms']:.1f} ms), machine busy "
        f"{summary['machine_busy_fraction']:.0%}"
    )
    progress("e2e hops (ms):\n" + e2e_hops.format_breakdown(hops))
    return E2EResult(summary, latencies, sorted(committed.values()), sorted(read_at.values()), hops)
