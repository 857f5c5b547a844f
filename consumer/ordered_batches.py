"""Per-key ordered batches: a few threads run batches of items, each key's items in order.

Items submitted with the same key are handed out one after another, in
submission order: a key's next item goes into a batch only after the batch
holding its previous one finished. A free thread takes the head item of up to
``max_batch`` ready keys at once and runs ``run_batch(items)`` on them (the
push worker claims, exports and records them together: one statement per
batch, not per record). Items of different keys run in the same or in
concurrent batches on up to ``max_workers`` threads.

The executor counts pending items (queued or running) so the poll loop can
apply back-pressure: stop fetching while :attr:`OrderedBatchExecutor.is_full`,
go on once it drained below the low-water mark. ``submit`` itself never
blocks, so the poll loop (which must keep polling within
``max.poll.interval.ms``) is never stuck behind a slow ERP.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

_log = logging.getLogger(__name__)

T = TypeVar("T")


class ExecutorClosed(RuntimeError):  # noqa: N818 - reads as a state
    """``submit`` after :meth:`OrderedBatchExecutor.shutdown`."""


class OrderedBatchExecutor(Generic[T]):
    """Runs batches of items concurrently across keys and sequentially within a key.

    ``run_batch`` gets items of distinct keys. ``max_pending`` is the capacity
    the caller respects (it is not enforced by blocking): :attr:`is_full` turns
    True at ``max_pending`` pending items and :attr:`has_room` True again at or
    below ``resume_at`` (default: half). A batch that raises is logged; later
    items of its keys still run (``run_batch`` is expected to handle its own
    errors).
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], None],
        max_workers: int,
        max_pending: int,
        *,
        max_batch: int = 256,
        resume_at: int | None = None,
        name: str = "ordered-batches",
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_workers = max_workers
        self.max_pending = max_pending
        self.resume_at = max_pending // 2 if resume_at is None else resume_at
        if not 0 <= self.resume_at < max_pending:
            raise ValueError("resume_at must be >= 0 and below max_pending")
        lock = threading.Lock()
        # Idle workers wait on ``_cond`` and are woken ONE at a time (a woken worker
        # takes every ready key up to ``max_batch``); ``wait_idle`` callers wait on
        # ``_idle``.
        self._cond = threading.Condition(lock)
        self._idle = threading.Condition(lock)
        # ``wait_room`` callers (the poll loop while the executor is full); notified
        # only while one waits, so finishing a batch costs nothing more otherwise.
        self._room = threading.Condition(lock)
        self._room_wanted = -1
        self._queues: dict[Hashable, deque[T]] = {}
        self._ready: deque[Hashable] = deque()  # keys with queued items and none running
        self._pending = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max_workers)
        ]
        for thread in self._threads:
            thread.start()

    # --- submitting ---------------------------------------------------------------------------
    def submit(self, key: Hashable, item: T) -> None:
        """Queue ``item`` after every earlier item of ``key``; never blocks."""
        with self._cond:
            if self._closed:
                raise ExecutorClosed("The executor is shut down")
            queue = self._queues.get(key)
            if queue is None:
                # No item of this key is queued or running: it may start at once.
                self._queues[key] = deque([item])
                self._ready.append(key)
                self._cond.notify()
            else:
                queue.append(item)
            self._pending += 1

    @property
    def pending(self) -> int:
        """Items queued or running."""
        with self._cond:
            return self._pending

    @property
    def is_full(self) -> bool:
        """True when the caller should stop feeding (pending >= max_pending)."""
        return self.pending >= self.max_pending

    @property
    def has_room(self) -> bool:
        """True when a paused caller may feed again (pending <= resume_at)."""
        return self.pending <= self.resume_at

    def capacity(self) -> int:
        """How many more items fit below ``max_pending`` (0 when full)."""
        return max(0, self.max_pending - self.pending)

    # --- waiting and stopping -------------------------------------------------------------
    def wait_room(self, room: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s until at least ``room`` more items fit; True if they do."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.max_pending - self._pending < room and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._room_wanted = self.max_pending - room
                try:
                    self._room.wait(remaining)
                finally:
                    self._room_wanted = -1
            return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until no item is pending; True if idle."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Refuse new items, let pending ones finish (up to ``timeout`` s), stop the threads.

        Returns True if every item finished. Items still queued after the
        timeout are dropped (their messages' offsets are never stored, so they
        are redelivered).
        """
        idle = self.wait_idle(timeout)
        with self._cond:
            self._closed = True
            if not idle:
                dropped = sum(len(q) for q in self._queues.values())
                _log.warning("Executor stopped with %d item(s) unfinished", dropped)
                self._ready.clear()
            self._cond.notify_all()
            self._idle.notify_all()
            self._room.notify_all()
        deadline = time.monotonic() + 1.0
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return idle

    # --- workers --------------------------------------------------------------------------
    def _work(self) -> None:
        ready = self._ready
        while True:
            with self._cond:
                while not ready and not self._closed:
                    self._cond.wait()
                if not ready:
                    return  # closed and nothing ready
                keys = [ready.popleft() for _ in range(min(self.max_batch, len(ready)))]
                items = [self._queues[key][0] for key in keys]
                if ready:
                    self._cond.notify()  # more than one batch is ready: wake another worker
            try:
                self._run_batch(items)
            except Exception:
                _log.exception("A batch of %d item(s) failed", len(items))
            with self._cond:
                requeued = False
                for key in keys:
                    queue = self._queues[key]
                    queue.popleft()
                    if queue:
                        # The key's next item runs after the ones of keys already waiting.
                        ready.append(key)
                        requeued = True
                    else:
                        del self._queues[key]
                self._pending -= len(keys)
                if requeued:
                    self._cond.notify()
                if self._pending <= self._room_wanted:
                    self._room.notify_all()
                if not self._pending:
                    self._idle.notify_all()
