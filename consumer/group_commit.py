"""Group commit: many threads' small writes coalesced into one database round trip.

Every push costs two writes (the claim before the ERP call, the outcome with
its outbox events after). Done one by one from 32+ worker threads, that is
two transactions and several round trips per export, and the process spends
its time in the driver and the pool. A :class:`GroupCommitter` owns one
thread per flush function (each with its own connection): callers
:meth:`~GroupCommitter.call` with one item and block; an idle thread takes
EVERYTHING queued at that moment (up to ``max_batch``), writes it with one
``flush(items)`` call (one statement, one transaction) and wakes each caller
with its own result. There is no added wait: under low load a batch is the
one item that arrived; under high load items queue while the previous batch
is in flight and go in the next one. Two threads keep the database busy while
one of them is building its batch or waking its callers (on a loaded machine
each of those waits for a CPU and for the GIL).

Per-item semantics are the flush function's job (it returns one result per
item, in order). If ``flush`` raises, NOTHING of the batch is assumed written
(one transaction) and every caller of that batch gets a
:class:`GroupCommitError` caused by it: the push worker then retries each
record exactly as if its own write had failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

_log = logging.getLogger("orderflow.consumer.group_commit")

T = TypeVar("T")
R = TypeVar("R")


class GroupCommitClosed(RuntimeError):  # noqa: N818 - reads as a state
    """An item was handed to a :class:`GroupCommitter` after :meth:`~GroupCommitter.close`."""


class GroupCommitError(RuntimeError):
    """The batch an item was written in failed; ``__cause__`` is the batch's error.

    Each caller gets its own exception (raising one shared object from many
    threads would splice their tracebacks together).
    """


class _Slot(Generic[T, R]):
    """One caller's item, its result or error, and the lock it waits on."""

    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        # Held until the batch is written: the caller blocks acquiring it (cheaper
        # than an Event, which is a Condition plus a lock).
        self.done = threading.Lock()
        self.done.acquire()


class GroupCommitter(Generic[T, R]):
    """Writes items handed over by many threads in batches, one ``flush`` per batch.

    ``flush(items)`` must return one result per item, in order, and write the
    batch atomically (or raise, writing nothing). Several flush functions give
    several batches in flight at once, one thread each; items of one batch are
    independent of the other batches' (the push worker never has two records
    of one key in flight).
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Sequence[R]] | Sequence[Callable[[list[T]], Sequence[R]]],
        *,
        max_batch: int = 256,
        name: str = "group-commit",
    ) -> None:
        flushes = [flush] if callable(flush) else list(flush)
        if not flushes:
            raise ValueError("at least one flush function is needed")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Slot[T, R]] = deque()
        self._closed = False
        #: Batches written and items in them (for tests and logs).
        self.batches = 0
        self.items = 0
        self.flush_seconds = 0.0
        self.name = name
        self._stats_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(f,), name=f"{name}-{i}", daemon=True)
            for i, f in enumerate(flushes)
        ]
        for thread in self._threads:
            thread.start()

    def call(self, item: T) -> R:
        """Write ``item`` in the next batch and return its result (or raise the batch's error)."""
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            if self._closed:
                raise GroupCommitClosed("The group committer is closed")
            self._queue.append(slot)
            if len(self._queue) == 1:
                self._cond.notify()
        slot.done.acquire()
        error = slot.error
        if error is not None:
            if not isinstance(error, Exception):
                raise error
            raise GroupCommitError(
                f"A batched write failed: {type(error).__name__}: {error}"
            ) from error
        return slot.result  # type: ignore[return-value]  # set by _run when error is None

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new items, write the queued ones, and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.batches:
            _log.info(
                "%s: %d items in %d batches (%.1f per batch, %.2f ms per flush)",
                self.name,
                self.items,
                self.batches,
                self.items / self.batches,
                1000 * self.flush_seconds / self.batches,
            )

    def _take(self) -> list[_Slot[T, R]] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            queue = self._queue
            if len(queue) <= self.max_batch:
                batch = list(queue)
                queue.clear()
            else:
                batch = [queue.popleft() for _ in range(self.max_batch)]
            return batch

    def _run(self, flush: Callable[[list[T]], Sequence[R]]) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            started = time.perf_counter()
            try:
                results = flush([slot.item for slot in batch])
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"flush returned {len(results)} results for {len(batch)} items"
                    )
            except BaseException as exc:  # every caller of the batch sees it
                _log.debug("Batch of %d failed: %s", len(batch), type(exc).__name__)
                for slot in batch:
                    slot.error = exc
                    slot.done.release()
                continue
            with self._stats_lock:
                self.batches += 1
                self.items += len(batch)
                self.flush_seconds += time.perf_counter() - started
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
                slot.done.release()
