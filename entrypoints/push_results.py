"""Reading a run's PushResults from the results topic (demo, benchmarks, chaos harness).

:func:`follow_push_results` reads and decodes every PushResult of a topic with a
consumer group of its own; :class:`PushResults` keeps one organisation's, with the
time each was read (the far end of every end-to-end latency).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_log = logging.getLogger("orderflow.pipeline_demo")


def follow_push_results(
    bootstrap_servers: str,
    topic: str,
    on_result: Callable[[dict[str, Any], float], None],
    stop: threading.Event,
    *,
    reader: str,
    logger: logging.Logger,
) -> None:
    """Read the PushResults of ``topic`` from the beginning until ``stop`` is set.

    A consumer group of its own (``<topic>-<reader>-<random>``) reads them;
    ``on_result(record, read_at)`` gets each decoded record and the wall-clock
    time it was read. Undecodable records are logged and skipped.
    """
    from adapters.avro.codec import decode_push_result
    from adapters.kafka.config import consumer_config
    from adapters.kafka.consumer import EventConsumer

    config = consumer_config(
        bootstrap_servers,
        group_id=f"{topic}-{reader}-{uuid.uuid4().hex[:8]}",
        client_id=f"orderflow-{reader}",
        logger=logger,
    )
    with EventConsumer(config) as consumer:
        consumer.subscribe([topic])
        while not stop.is_set():
            messages = consumer.poll_batch(500, 0.05)
            now = time.time()
            for message in messages:
                try:
                    on_result(decode_push_result(message.value), now)
                except Exception:
                    logger.warning("Undecodable record on %s@%d", topic, message.offset)


@dataclass
class PushResults:
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
        """Count one decoded PushResult read at ``read_at`` (other organisations' are ignored)."""
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
        """How many orders have a result."""
        with self.lock:
            return len(self.status)


class ReaderThread(threading.Thread):
    """A daemon thread that keeps the exception its target raised (instead of losing it)."""

    def __init__(self, name: str, target: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self._run_target = target
        self.error: BaseException | None = None

    def run(self) -> None:
        """Run the target, keeping what it raised in :attr:`error`."""
        try:
            self._run_target()
        except BaseException as exc:
            self.error = exc
            _log.exception("%s failed", self.name)


def read_results(
    bootstrap_servers: str, topic: str, results: PushResults, stop: threading.Event
) -> None:
    """Read ``topic``'s PushResults into ``results`` until ``stop`` is set."""
    follow_push_results(
        bootstrap_servers, topic, results.add, stop, reader="demo-reader", logger=_log
    )
