"""Consumer benchmarks: exports/s of the push worker from a pre-filled requests topic.

The requests topic (6 partitions) is filled ONCE with PushRequested records
exactly as the relay publishes them (``encode_outbox_event``, key = order id,
the event's headers). Each run then reads it from the start in a consumer
group of its own, against a fresh scratch database holding only the MOCK
connection (``latency_ms`` 50 or 0), so every run exports every order anew.
The rate is counted from the outside: SUCCESS rows of the push log, between
the moment every consumer process had its partitions and the last export.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.avro.records import encode_outbox_event
from adapters.kafka.config import producer_config
from adapters.kafka.producer import EventProducer
from adapters.kafka.topics import TopicNames, ensure_topics
from bench.relay_bench import PARTITIONS, new_prefix
from bench.stats import steady_rate
from bench.workload import (
    Services,
    add_mock_connection,
    count_success,
    push_requested,
    scratch_database,
    service_args,
    success_times,
)
from entrypoints.demo import RETRY_TIERS
from entrypoints.demo_processes import ChildProcess

#: Longest wait for the first export after every consumer has its partitions.
START_TIMEOUT_S = 60.0


def _require_running(children: list[ChildProcess]) -> None:
    for child in children:
        if not child.running():
            raise RuntimeError(f"{child.name} exited early:\n{child.tail()}")


@dataclass
class RequestsTopic:
    """A pre-filled requests topic: its prefix, the org of its records and how many."""

    prefix: str
    org_id: uuid.UUID
    records: int


def prefill(services: Services, records: int, progress: Any = print) -> RequestsTopic:
    """Create the topics of a new prefix and produce ``records`` PushRequested records."""
    prefix = new_prefix("c")
    topics = TopicNames(prefix, retry_tiers=RETRY_TIERS)
    ensure_topics(services.bootstrap_servers, topics, partitions=PARTITIONS)
    org_id = uuid.uuid4()
    producer = EventProducer(producer_config(services.bootstrap_servers, client_id="bench-prefill"))
    started = time.monotonic()
    for index in range(records):
        event = push_requested(org_id, index)
        producer.produce(
            topics.requests,
            str(event.aggregate_id).encode(),
            encode_outbox_event(event),
            event.headers,
        )
        if index % 1000 == 0:
            producer.poll(0)
    left = producer.close(60.0)
    if left:
        raise RuntimeError(f"prefill: {left} records not acknowledged")
    progress(f"consumer: {records} requests produced in {time.monotonic() - started:.1f} s")
    return RequestsTopic(prefix, org_id, records)


@dataclass
class ConsumerRun:
    """One consumer configuration on the pre-filled topic."""

    name: str
    exports_per_s: float
    exports: int
    processes: int
    #: Epoch seconds of every SUCCESS (for the throughput plot).
    success_at: list[float] = field(default_factory=list)
    measured_from: float = 0.0


def _worker_args(
    services: Services, url: str, topic: RequestsTopic, group: str, extra: list[str]
) -> list[str]:
    return [
        *service_args(services, url, topic.prefix),
        "--partitions",
        str(PARTITIONS),
        "--no-ensure-topics",
        "--group",
        group,
        "--retry-tiers",
        str(RETRY_TIERS),
        *extra,
    ]


#: The push worker: ``python -m entrypoints.cli consume`` (``orderflow consume``).
WORKER_COMMAND = ("entrypoints.cli", "consume")
#: The sequential baseline: ``python -m bench.sequential_consumer``.
SEQUENTIAL_COMMAND = ("bench.sequential_consumer",)


def run_consumers(
    services: Services,
    topic: RequestsTopic,
    *,
    name: str,
    command: Sequence[str],
    processes: int,
    latency_ms: float,
    window_s: float,
    logs: Path,
    extra_args: list[str] | None = None,
    progress: Any = print,
) -> ConsumerRun:
    """Run ``processes`` copies of ``command`` on ``topic`` for ``window_s`` (or to the end).

    ``command`` is ``python -m``'s module and the arguments before the consumer's
    flags (e.g. :data:`WORKER_COMMAND`).

    The window opens at the first export; the rate counts the exports after
    every process had its partitions.
    """
    group = f"{topic.prefix}-{name}-{uuid.uuid4().hex[:6]}"
    with scratch_database(services) as url:
        add_mock_connection(url, topic.org_id, latency_ms)
        children = [
            ChildProcess(
                f"{name}[{i}]",
                command[0],
                [
                    *command[1:],
                    *_worker_args(services, url, topic, group, list(extra_args or [])),
                ],
                logs / f"consumer-{name}-{i}.log",
            )
            for i in range(processes)
        ]
        try:
            for child in children:
                child.start()
            for child in children:
                child.wait_for_log(r"Assigned \[", 90.0)
            ready = time.time()
            # The window opens with the first export (fetching and connecting come first).
            first_deadline = time.monotonic() + START_TIMEOUT_S
            while count_success(url) == 0 and time.monotonic() < first_deadline:
                _require_running(children)
                time.sleep(0.1)
            deadline = time.monotonic() + window_s
            while time.monotonic() < deadline and count_success(url) < topic.records:
                _require_running(children)
                time.sleep(0.25)
        finally:
            for child in children:
                child.stop(60.0)
        times = success_times(url)
    measured = [t for t in times if t >= ready]
    rate = steady_rate(measured)
    progress(
        f"consumer: {name}: {len(times)} exports, {rate:.0f}/s "
        f"({processes} process{'es' if processes > 1 else ''}, MOCK {latency_ms:g} ms)"
    )
    return ConsumerRun(name, rate, len(times), processes, times, ready)
