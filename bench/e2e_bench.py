"""End-to-end latency: open-loop approvals -> relay -> Kafka -> worker (MOCK, 0 ms) -> PushResult.

Reuses the pipeline demo's pieces (``entrypoints.demo``): relay and push worker
as child processes, the results-topic reader, the open-loop approval loop.
Latency per order: from the approval's commit to the moment its PushResult
was read from the results topic.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.kafka.topics import TopicNames, ensure_topics
from bench.procs import python_module
from bench.relay_bench import PARTITIONS, new_prefix
from bench.stats import latency_summary, steady_rate
from bench.workload import Services, add_mock_connection, scratch_database
from entrypoints.demo import (
    RETRY_TIERS,
    DemoOptions,
    _read_results,
    _require_running,
    _Results,
    _services,
    _Thread,
)

#: Longest wait for the last PushResult after the last approval.
SETTLE_TIMEOUT_S = 120.0
#: Approving threads of the approver process.
APPROVERS = 2


def _approve(
    database_url: str, org_id: uuid.UUID, orders: int, rate: float
) -> dict[uuid.UUID, float]:
    """Run ``bench.approver`` (its own process); return each order's commit time."""
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
            str(orders / rate * 1.5 + 5),
        ),
        capture_output=True,
        text=True,
        timeout=orders / rate * 10 + 120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"approver failed:\n{completed.stderr[-3000:]}")
    committed: dict[uuid.UUID, float] = {}
    for line in completed.stdout.splitlines():
        order, at = line.split()
        committed[uuid.UUID(order)] = float(at)
    return committed


@dataclass
class E2EResult:
    """Latencies and the time series of one end-to-end run."""

    summary: dict[str, float]
    latencies_ms: list[float] = field(default_factory=list)
    approved_at: list[float] = field(default_factory=list)
    result_at: list[float] = field(default_factory=list)


def run_e2e(
    services: Services, rate: float, seconds: float, logs: Path, progress: Any = print
) -> E2EResult:
    """Approve ``rate``/s for ``seconds`` (open loop) and measure every order's latency."""
    orders = max(1, round(rate * seconds))
    prefix = new_prefix("e")
    with scratch_database(services) as url:
        org_id = uuid.uuid4()
        add_mock_connection(url, org_id, latency_ms=0)
        ensure_topics(
            services.bootstrap_servers,
            TopicNames(prefix, retry_tiers=RETRY_TIERS),
            partitions=PARTITIONS,
        )
        options = DemoOptions(orders=orders, topic_prefix=prefix, rate=rate)
        relay, worker = _services(url, services.bootstrap_servers, options, logs)
        results = _Results(org_id)
        stop = threading.Event()
        topic = TopicNames(prefix, retry_tiers=RETRY_TIERS).results
        servers = services.bootstrap_servers
        reader = _Thread("results reader", lambda: _read_results(servers, topic, results, stop))
        try:
            relay.start()
            worker.start()
            reader.start()
            relay.wait_for_log(r"Relay is the leader", 60.0)
            worker.wait_for_log(r"Assigned \[", 60.0)
            time.sleep(2.0)  # the reader's group joins too
            progress(f"e2e: {orders} approvals at {rate:.0f}/s")
            committed = _approve(url, org_id, orders, rate)
            _require_running((relay, worker))
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while results.count() < len(committed) and time.monotonic() < deadline:
                _require_running((relay, worker))
                time.sleep(0.05)
        finally:
            worker.stop(30.0)
            relay.stop(30.0)
            stop.set()
            reader.join(30.0)
    with results.lock:
        read_at = dict(results.read_at)
    latencies = [(read_at[o] - committed[o]) * 1000 for o in read_at if o in committed]
    summary = latency_summary(latencies)
    summary["orders"] = len(committed)
    summary["orders_scheduled"] = orders
    summary["results"] = len(read_at)
    summary["rate_per_s"] = rate
    # Open loop, but on a busy machine the approver itself may fall behind the schedule.
    summary["achieved_rate_per_s"] = steady_rate(committed.values())
    summary["seconds"] = seconds
    if len(committed) < orders:
        progress(f"e2e: the approver fell behind: {len(committed)} of {orders} approved in time")
    progress(
        f"e2e: {len(read_at)}/{len(committed)} results, p50 {summary['p50_ms']:.1f} ms, "
        f"p99 {summary['p99_ms']:.1f} ms, max {summary['max_ms']:.1f} ms; approvals at "
        f"{summary['achieved_rate_per_s']:.0f}/s"
    )
    return E2EResult(summary, latencies, sorted(committed.values()), sorted(read_at.values()))
