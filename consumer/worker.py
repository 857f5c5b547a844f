"""The push worker: a consumer group on the requests topic and the retry tiers.

Poll loop (one thread) and ERP calls (a pool) are separate:

* the loop polls, holds back retry-tier records that are not due yet (their
  partition is paused, the records kept in memory in order, and fed again
  once due: never early), and hands every other record to an
  :class:`~consumer.ordered_batches.OrderedBatchExecutor` keyed by the message
  key (the draft order id): a few pipeline threads each take a batch of ready
  records of distinct keys (one order's records run in order, other orders
  together or in concurrent batches);
* a full executor stops the loop taking records (back-pressure): it waits for
  room, librdkafka keeping what it prefetched; an executor full for
  ``pause_after_s`` without room (a stuck ERP) pauses every assigned partition,
  so the loop polls on (rebalance callbacks run in poll); they resume once it
  drained to half;
* a pipeline thread runs :meth:`~consumer.push_handler.PushHandler.handle_batch`
  on its batch: one statement claims the batch, the ERP calls run on a pool of
  ``concurrency`` threads (in-flight calls bounded by it), one statement records
  the outcomes with their outbox events; a record is
  *complete* once its outcome committed (or its dead letter was acknowledged
  by the broker); :class:`~consumer.offsets.OffsetTracker` releases the
  contiguous completed prefix and the loop stores that offset (auto-commit
  commits stored offsets only);
* revocation waits (bounded) for in-flight records of the revoked partitions,
  stores and commits, then forgets them and their held records; a lost
  partition is forgotten at once; an assigned partition is resumed (librdkafka
  would keep it paused from a hold or back-pressure before it was revoked);
* :meth:`PushWorker.stop` (SIGTERM/SIGINT in ``entrypoints.worker_process``)
  stops fetching, drains in-flight work, stores and commits offsets, and closes.

The loop talks to the broker through the ports of :mod:`domain.messaging`
(:class:`~domain.messaging.MessageConsumer`, :class:`~domain.messaging.MessageProducer`:
``adapters.kafka``'s ``EventConsumer`` / ``EventProducer`` in production, fakes
in unit tests) and to the handler through :class:`RecordHandler`. Wiring and
the command line (``orderflow consume``) are the composition root's
(``entrypoints.worker_process``).

Size: about 450 lines, a third of them this docstring; kept whole because the
loop, its back-pressure and the rebalance callbacks share one state (held
records, offsets in flight, paused partitions) that must change under one
thread; the batch scheduling and the offsets live in ``ordered_batches`` and
``offsets``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol

from consumer.handling import DeadLetter, Handled, HandleResult, RetrySettings
from consumer.offsets import OffsetTracker
from consumer.ordered_batches import OrderedBatchExecutor
from domain.messaging import (
    DeliveryOutcome,
    InboundMessage,
    MessageConsumer,
    MessageProducer,
    MessageT,
    Partition,
)

_log = logging.getLogger("orderflow.consumer")

#: Parallel ERP calls unless told otherwise; see ``WorkerSettings``.
DEFAULT_CONCURRENCY = 128
#: Batches in progress at once unless told otherwise; see ``WorkerSettings``.
DEFAULT_PIPELINES = 4
#: Most records of one batch unless told otherwise; see ``WorkerSettings``.
DEFAULT_BATCH_SIZE = 256

PartitionKey = tuple[str, int]


class RecordHandler(Protocol):
    """What the loop needs of :class:`~consumer.push_handler.PushHandler`.

    ``new_attempts`` builds the per-thread state handed back to
    ``handle_batch`` (a ``PushAttempts``: its unit of work and writer are used
    by one pipeline thread at a time); it has a ``close()``.
    """

    def new_attempts(self) -> Any:
        """Per-thread state for :meth:`handle_batch`."""
        ...

    def handle_batch(
        self,
        messages: Sequence[InboundMessage],
        attempts: Any,
        run_concurrently: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]],
    ) -> list[HandleResult]:
        """Process records of distinct keys: per record done, or a dead letter to produce."""
        ...

    def due_at(self, message: InboundMessage) -> datetime | None:
        """When a retry-tier record may run (None: now)."""
        ...


@dataclass(frozen=True)
class WorkerSettings:
    """Tuning of the push worker's loop and its retry schedule."""

    #: Parallel ERP calls (threads of the ERP pool). They wait on the network: 1,500/s
    #: at 50 ms needs 75 calls in flight; 64 capped the worker at 1,246/s, 128 did
    #: 2,441/s (``make bench-quick``, MOCK at 50 ms). The threads only call the
    #: connector, so idle ones cost nothing but their stacks.
    concurrency: int = DEFAULT_CONCURRENCY
    #: Batches in progress at once: while one waits for its ERP calls or its
    #: statements, the others are built, claimed and recorded.
    pipelines: int = DEFAULT_PIPELINES
    #: Most records of one batch (one claim and one outcome statement).
    batch_size: int = DEFAULT_BATCH_SIZE
    #: Most records dispatched but not finished: fetching stops there (the worker
    #: process raises it to twice ``concurrency`` if lower).
    max_pending: int = 1024
    #: How long the executor may stay full before its partitions are paused. Until
    #: then the loop just stops taking records (librdkafka keeps its prefetched ones):
    #: pausing drops them and resuming fetches them again, which left the pool idle
    #: for a fetch round trip at every refill (a third of the time at 0 ms ERP latency).
    #: Pausing is for an executor that makes no progress (a stuck ERP): rebalance
    #: callbacks run only inside poll, so the loop polls again after this at most.
    pause_after_s: float = 1.0
    poll_timeout_s: float = 0.2
    max_batch: int = 500
    #: Longest wait for in-flight work on SIGTERM or revocation.
    drain_timeout_s: float = 30.0
    #: Pause before re-running a record whose handling raised (database down, ...).
    error_backoff_s: float = 1.0
    retry: RetrySettings = field(default_factory=RetrySettings)


def _partition(message: InboundMessage) -> PartitionKey:
    return (message.topic, message.partition)


class PushWorker(Generic[MessageT]):
    """Runs the poll loop described in the module docstring until :meth:`stop`.

    Generic in the consumer's message type: the records it hands over are the
    ones whose offsets it is given back to store.
    """

    def __init__(
        self,
        consumer: MessageConsumer[MessageT],
        producer: MessageProducer,
        handler: RecordHandler,
        *,
        requests_topic: str,
        retry_topics: Sequence[str],
        dlq_topic: str,
        settings: WorkerSettings | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings or WorkerSettings()
        self._consumer = consumer
        self._producer = producer
        self._handler = handler
        self._topics = (requests_topic, *retry_topics)
        self._retry_topics = frozenset(retry_topics)
        self._dlq = dlq_topic
        self._clock = clock or (lambda: datetime.now(UTC))
        self._tracker: OffsetTracker[PartitionKey, MessageT] = OffsetTracker()
        self._executor: OrderedBatchExecutor[MessageT] | None = None
        self._calls: ThreadPoolExecutor | None = None
        self._attempts_made: list[Any] = []
        self._attempts_lock = threading.Lock()
        self._to_store: queue.SimpleQueue[MessageT] = queue.SimpleQueue()
        self._held: dict[PartitionKey, list[MessageT]] = {}
        self._due: dict[PartitionKey, datetime] = {}
        self._backpressure = False
        self._full_since: float | None = None
        self._stop = threading.Event()
        self._local = threading.local()
        self.stats: dict[str, int] = {}

    # --- control --------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop (safe from signal handlers and other threads)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def run(self) -> None:
        """Consume until :meth:`stop`; then drain, store, commit and close."""
        s = self.settings
        self._calls = ThreadPoolExecutor(s.concurrency, thread_name_prefix="erp-call")
        self._executor = OrderedBatchExecutor(
            self._run_batch,
            # No more batches in progress than ERP calls allowed: with one call at a
            # time, the next batch is claimed only once the previous one is recorded.
            min(s.pipelines, s.concurrency),
            s.max_pending,
            max_batch=s.batch_size,
            name="push-batch",
        )
        self._consumer.subscribe(
            list(self._topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not self._stop.is_set():
                self._step()
        finally:
            self._shutdown()

    def _step(self) -> None:
        executor = self._executor
        assert executor is not None
        self._producer.poll(0)
        self._store_completed()
        self._release_due()
        if self._wait_for_room(executor):
            return
        self._apply_backpressure(executor)
        if self._backpressure:
            time.sleep(min(0.05, self.settings.poll_timeout_s))
            # Keep polling: rebalance callbacks run inside poll; paused partitions fetch nothing.
        room = max(1, min(self.settings.max_batch, executor.capacity()))
        for message in self._consumer.poll_batch(room, self._poll_timeout()):
            self._dispatch(message)

    def _wait_for_room(self, executor: OrderedBatchExecutor[MessageT]) -> bool:
        """While the executor is full (for less than ``pause_after_s``): wait for room.

        True if the loop waited instead of polling (see ``WorkerSettings.pause_after_s``).
        """
        if self._backpressure or not executor.is_full:
            self._full_since = None
            return False
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        left = self._full_since + self.settings.pause_after_s - now
        if left <= 0:
            return False  # no progress for a while: pause (``_apply_backpressure``)
        # Refill in chunks, not one record per wake-up of the loop.
        room = max(1, min(self.settings.max_batch, executor.max_pending // 4))
        executor.wait_room(room, min(left, self._poll_timeout()))
        return True

    def _poll_timeout(self) -> float:
        timeout = self.settings.poll_timeout_s
        if self._due:
            until = (min(self._due.values()) - self._clock()).total_seconds()
            timeout = max(0.0, min(timeout, until))
        return timeout

    # --- dispatching ----------------------------------------------------------------------
    def _dispatch(self, message: MessageT) -> None:
        partition = _partition(message)
        held = self._held.get(partition)
        if held is not None:
            held.append(message)  # behind a record that is not due yet
            return
        if message.topic in self._retry_topics:
            due = self._handler.due_at(message)
            if due is not None and due > self._clock():
                self._held[partition] = [message]
                self._due[partition] = due
                self._consumer.pause([_to_partition(self._consumer, partition)])
                _log.debug("Holding %s[%d]@%d until %s", *partition, message.offset, due)
                return
        self._tracker.track(partition, message)
        key: Hashable = message.key if message.key is not None else partition
        assert self._executor is not None
        self._executor.submit(key, message)

    def _release_due(self) -> None:
        now = self._clock()
        for partition, due in list(self._due.items()):
            if due > now:
                continue
            messages = self._held.pop(partition, [])
            del self._due[partition]
            for message in messages:
                self._dispatch(message)  # may hold again behind a later due_at
            if partition not in self._held and not self._backpressure:
                self._consumer.resume([_to_partition(self._consumer, partition)])

    def _apply_backpressure(self, executor: OrderedBatchExecutor[MessageT]) -> None:
        if not self._backpressure and executor.is_full:
            self._backpressure = True
            self._consumer.pause(self._consumer.assignment())
            _log.info("Back-pressure: %d records pending, fetching paused", executor.pending)
        elif self._backpressure and executor.has_room:
            self._backpressure = False
            resumable = [
                p for p in self._consumer.assignment() if (p.topic, p.partition) not in self._held
            ]
            self._consumer.resume(resumable)
            _log.info("Back-pressure released, fetching resumed")

    # --- one batch (pipeline threads) -----------------------------------------------------
    def _attempts(self) -> Any:
        attempts = getattr(self._local, "attempts", None)
        if attempts is None:
            attempts = self._handler.new_attempts()
            self._local.attempts = attempts
            with self._attempts_lock:
                self._attempts_made.append(attempts)
        return attempts

    def _run_concurrently(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        calls = self._calls
        assert calls is not None
        return list(calls.map(fn, items))

    def _run_batch(self, messages: list[MessageT]) -> None:
        while True:
            try:
                results = self._handler.handle_batch(
                    messages, self._attempts(), self._run_concurrently
                )
                break
            except Exception:
                first = messages[0]
                _log.exception(
                    "Handling a batch of %d record(s) from %s[%d]@%d failed",
                    len(messages),
                    first.topic,
                    first.partition,
                    first.offset,
                )
                if self._stop.is_set():
                    return  # not completed: redelivered after restart
                self._stop.wait(self.settings.error_backoff_s)
        for message, result in zip(messages, results, strict=True):
            self._count(result.what if isinstance(result, Handled) else "dead_lettered")
            if isinstance(result, DeadLetter):
                self._produce_dead_letter(message, result)
            else:
                self._complete(message)

    def _produce_dead_letter(self, message: MessageT, letter: DeadLetter) -> None:
        def delivered(report: DeliveryOutcome) -> None:
            if report.ok:
                self._complete(message)
                return
            _log.warning("DLQ delivery failed (%s); producing again", report.error)
            if not self._stop.is_set():
                self._produce_dead_letter(message, letter)

        self._producer.produce(self._dlq, letter.key, letter.value, letter.headers, delivered)

    def _complete(self, message: MessageT) -> None:
        released = self._tracker.complete(_partition(message), message)
        if released is not None:
            self._to_store.put(released)

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def _store_completed(self) -> None:
        latest: dict[PartitionKey, MessageT] = {}
        while True:
            try:
                message = self._to_store.get_nowait()
            except queue.Empty:
                break
            latest[_partition(message)] = message
        if latest:
            self._consumer.store_offsets(list(latest.values()))

    # --- rebalances -----------------------------------------------------------------------
    def _on_assign(self, partitions: list[Partition]) -> None:
        _log.info("Assigned %s", [(p.topic, p.partition) for p in partitions])
        if not partitions:
            return
        if self._backpressure:
            self._consumer.pause(partitions)
        else:
            # librdkafka keeps a partition's pause flag across revocation and
            # re-assignment: one paused here for a held retry (or back-pressure),
            # revoked, and assigned back would never be fetched again. None of the
            # newly assigned partitions is held (revocation forgot them), so resume all.
            self._consumer.resume(partitions)

    def _on_revoke(self, partitions: list[Partition]) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while any(self._tracker.in_flight(k) for k in keys) and time.monotonic() < deadline:
            self._producer.poll(0.01)
            self._store_completed()
        self._store_completed()
        try:
            self._consumer.commit()
        except Exception:
            _log.exception("Commit on revoke failed; the new owner deduplicates")
        self._forget(keys)
        _log.info("Revoked %s", keys)

    def _on_lost(self, partitions: list[Partition]) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        self._forget(keys)
        _log.warning("Lost %s", keys)

    def _forget(self, keys: list[PartitionKey]) -> None:
        self._tracker.forget(keys)
        for key in keys:
            self._held.pop(key, None)
            self._due.pop(key, None)

    # --- stopping -------------------------------------------------------------------------
    def _shutdown(self) -> None:
        executor = self._executor
        try:
            assignment = self._consumer.assignment()
            if assignment:
                self._consumer.pause(assignment)
        except Exception:
            _log.exception("Could not pause before draining")
        if executor is not None:
            deadline = time.monotonic() + self.settings.drain_timeout_s
            while executor.pending and time.monotonic() < deadline:
                self._producer.poll(0.05)
                self._store_completed()
            executor.shutdown(timeout=max(0.0, deadline - time.monotonic()))
        if self._calls is not None:
            self._calls.shutdown(wait=False, cancel_futures=True)
        with self._attempts_lock:
            made, self._attempts_made = self._attempts_made, []
        for attempts in made:
            try:
                attempts.close()
            except Exception:
                _log.exception("Closing a pipeline's push attempts failed")
        self._producer.flush(min(10.0, self.settings.drain_timeout_s))
        self._store_completed()
        try:
            self._consumer.commit()
        except Exception:
            _log.exception("Final commit failed; uncommitted records are redelivered")
        self._consumer.close()
        _log.info("Push worker stopped: %s", self.stats)


def _to_partition(consumer: MessageConsumer[Any], key: PartitionKey) -> Partition:
    for partition in consumer.assignment():
        if (partition.topic, partition.partition) == key:
            return partition
    return Partition(*key)
