"""The sequential push consumer, the baseline of the consumer benchmark.

One message at a time, the way a first version is written: poll one record,
handle it (the same ``PushHandler`` as the worker: dedupe, claim the push-log
row, call the connector, write the outcome with its PushResult outbox event),
store and commit its offset synchronously, poll the next. No pool, no
batching, no pipelining: at 50 ms of ERP latency it cannot exceed ~20/s.

``python -m bench.sequential_consumer`` takes the worker's connection flags and
runs until SIGTERM/SIGINT (or ``--max-seconds``).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import click

from adapters.kafka.config import consumer_config
from adapters.kafka.consumer import EventConsumer
from adapters.kafka.topics import TopicNames
from consumer.push_attempt import PushAttempts
from consumer.push_handler import Handled, PushHandler, RetrySettings
from entrypoints import bootstrap
from entrypoints.cli_support import NON_NEGATIVE_FLOAT, NON_NEGATIVE_INT, POSITIVE_FLOAT
from entrypoints.process_args import ServiceOptions, configure_logging, service_options
from entrypoints.worker_process import record_codec

_log = logging.getLogger("orderflow.bench.sequential")


@dataclass(frozen=True)
class Baseline:
    """What the sequential consumer is told: the worker's shared flags, its group and retries."""

    services: ServiceOptions
    group: str
    retry: RetrySettings
    max_seconds: float


def run(baseline: Baseline, stop: threading.Event) -> dict[str, int]:
    """Consume one record at a time until ``stop`` is set; return outcome counts."""
    services, retry = baseline.services, baseline.retry
    topics = TopicNames(services.topic_prefix, retry_tiers=retry.retry_tiers)
    factory = bootstrap.session_factory(database_url=services.database_url)
    registry = bootstrap.default_registry()
    cipher = bootstrap.default_cipher()
    attempts = PushAttempts(
        bootstrap.sql_unit_of_work(session_factory=factory),
        registry,
        cipher,
        writer=bootstrap.push_log_writer(database_url=services.database_url),
    )
    handler = PushHandler(
        lambda: attempts,
        retry,
        codec=record_codec(),
    )
    counts: dict[str, int] = {}
    consumer = EventConsumer(
        consumer_config(
            services.bootstrap_servers,
            group_id=baseline.group,
            client_id="bench-sequential",
            logger=_log,
        )
    )

    def assigned(partitions: list[Any]) -> None:
        _log.info("Assigned %s", [(p.topic, p.partition) for p in partitions])

    consumer.subscribe([topics.requests], on_assign=assigned)
    deadline = time.monotonic() + baseline.max_seconds
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            for message in consumer.poll_batch(1, 0.2):
                result = handler.handle(message, attempts)
                what = result.what if isinstance(result, Handled) else "dead_letter"
                counts[what] = counts.get(what, 0) + 1
                consumer.store_offset(message)
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    _log.info("Sequential consumer stopped: %s", counts)
    return counts


@click.command("sequential-consumer", context_settings={"help_option_names": ["-h", "--help"]})
@service_options
@click.option("--group", required=True, help="consumer group id")
@click.option("--max-retries", type=NON_NEGATIVE_INT, default=3, help="retries (3)")
@click.option(
    "--retry-delay-base", type=NON_NEGATIVE_FLOAT, default=1.0, help="retry delay base (1.0)"
)
@click.option("--retry-tiers", type=NON_NEGATIVE_INT, default=3, help="retry tier topics (3)")
@click.option("--max-seconds", type=POSITIVE_FLOAT, default=3600.0, help="longest run (3600)")
def sequential_consumer(
    *,
    services: ServiceOptions,
    group: str,
    max_retries: int,
    retry_delay_base: float,
    retry_tiers: int,
    max_seconds: float,
) -> None:
    """Run the sequential consumer until SIGTERM/SIGINT (or --max-seconds)."""
    configure_logging(services.log_level)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    retry = RetrySettings(max_retries, retry_delay_base, retry_tiers)
    run(Baseline(services, group, retry, max_seconds), stop)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the sequential consumer; exit status 0 after a stop, 2 on a usage error."""
    # click's standalone mode: it prints usage errors and exits with the status.
    sequential_consumer.main(
        args=list(sys.argv[1:] if argv is None else argv),
        prog_name="python -m bench.sequential_consumer",
    )


if __name__ == "__main__":
    main()
