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

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from adapters.kafka.config import consumer_config
from adapters.kafka.consumer import EventConsumer
from adapters.kafka.topics import TopicNames
from consumer.push_attempt import PushAttempts
from consumer.push_handler import Handled, PushHandler, RetrySettings
from entrypoints import bootstrap
from entrypoints.process_args import add_service_arguments, configure_logging, require_services
from entrypoints.worker_process import record_codec

_log = logging.getLogger("orderflow.bench.sequential")


def run(args: argparse.Namespace, stop: threading.Event) -> dict[str, int]:
    """Consume one record at a time until ``stop`` is set; return outcome counts."""
    topics = TopicNames(args.topic_prefix, retry_tiers=args.retry_tiers)
    factory = bootstrap.session_factory(database_url=args.database_url)
    registry = bootstrap.default_registry()
    cipher = bootstrap.default_cipher()
    attempts = PushAttempts(
        bootstrap.sql_unit_of_work(session_factory=factory),
        registry,
        cipher,
        writer=bootstrap.push_log_writer(database_url=args.database_url),
    )
    handler = PushHandler(
        lambda: attempts,
        RetrySettings(args.max_retries, args.retry_delay_base, args.retry_tiers),
        codec=record_codec(),
    )
    counts: dict[str, int] = {}
    consumer = EventConsumer(
        consumer_config(
            args.bootstrap_servers, group_id=args.group, client_id="bench-sequential", logger=_log
        )
    )

    def assigned(partitions: list[Any]) -> None:
        _log.info("Assigned %s", [(p.topic, p.partition) for p in partitions])

    consumer.subscribe([topics.requests], on_assign=assigned)
    deadline = time.monotonic() + args.max_seconds
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sequential consumer until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m bench.sequential_consumer")
    add_service_arguments(parser)
    parser.add_argument("--group", required=True)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--retry-delay-base", type=float, default=1.0)
    parser.add_argument("--retry-tiers", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    require_services(parser, args)
    configure_logging(args.log_level)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run(args, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
