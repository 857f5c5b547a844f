"""End-to-end latency: open-loop approvals -> relay -> Kafka -> worker (MOCK, 0 ms) -> PushResult.

Reuses the pipeline demo's pieces (``entrypoints.demo``): relay and push worker
as child processes, the results-topic reader, the open-loop approval loop.
Latency per order: from the approval's commit to the moment its PushResult
was read from the results topic.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.kafka.topics import TopicNames, ensure_topics
from bench.relay_bench import PARTITIONS, new_prefix
from bench.stats import latency_summary
from bench.workload import Services, add_mock_connection, scratch_database
from entrypoints import bootstrap
from entrypoints.demo import (
    RETRY_TIERS,
    DemoOptions,
    _approve,
    _Progress,
    _read_results,
    _require_running,
    _Results,
    _services,
    _Thread,
)

#: Longest wait for the last PushResult after the last approval.
SETTLE_TIMEOUT_S = 120.0


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
        engine = bootstrap.make_engine(url)
        uow = bootstrap.sql_unit_of_work(session_factory=bootstrap.session_factory(engine=engine))
        try:
            relay.start()
            worker.start()
            reader.start()
            relay.wait_for_log(r"Relay is the leader", 60.0)
            worker.wait_for_log(r"Assigned \[", 60.0)
            time.sleep(2.0)  # the reader's group joins too
            progress(f"e2e: {orders} approvals at {rate:.0f}/s")
            approving = time.monotonic()
            committed = _approve(uow, org_id, options, results, _Progress(orders), (relay, worker))
            approve_s = time.monotonic() - approving
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while results.count() < orders and time.monotonic() < deadline:
                _require_running((relay, worker))
                time.sleep(0.05)
        finally:
            worker.stop(30.0)
            relay.stop(30.0)
            stop.set()
            reader.join(30.0)
            engine.dispose()
    with results.lock:
        read_at = dict(results.read_at)
    latencies = [(read_at[o] - committed[o]) * 1000 for o in read_at if o in committed]
    summary = latency_summary(latencies)
    summary["orders"] = orders
    summary["results"] = len(read_at)
    summary["rate_per_s"] = rate
    # Open loop, but one approving thread: on a loaded machine it may fall behind.
    summary["achieved_rate_per_s"] = len(committed) / approve_s if approve_s > 0 else 0.0
    summary["seconds"] = seconds
    progress(
        f"e2e: {len(read_at)}/{orders} results, p50 {summary['p50_ms']:.1f} ms, "
        f"p99 {summary['p99_ms']:.1f} ms, max {summary['max_ms']:.1f} ms; approvals at "
        f"{summary['achieved_rate_per_s']:.0f}/s"
    )
    return E2EResult(summary, latencies, sorted(committed.values()), sorted(read_at.values()))
