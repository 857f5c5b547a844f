"""Per-key ordered concurrency: a bounded thread pool that keeps each key's tasks in order.

Tasks submitted with the same key run one after another, in submission order;
tasks of different keys run concurrently on up to ``max_workers`` threads.
The executor counts pending tasks (queued or running) so the poll loop can
apply back-pressure: stop fetching while :attr:`OrderedExecutor.is_full`, go on
once it drained below the low-water mark. ``submit`` itself never blocks, so
the poll loop (which must keep polling within ``max.poll.interval.ms``) is
never stuck behind a slow ERP.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

_log = logging.getLogger(__name__)

Task = Callable[[], None]


class ExecutorClosed(RuntimeError):  # noqa: N818 - reads as a state
    """``submit`` after :meth:`OrderedExecutor.shutdown`."""


class OrderedExecutor:
    """Runs callables concurrently across keys and sequentially within a key.

    ``max_pending`` is the capacity the caller respects (it is not enforced by
    blocking): :attr:`is_full` turns True at ``max_pending`` pending tasks and
    :attr:`has_room` True again at or below ``resume_at`` (default: half).
    A task that raises is logged; later tasks of its key still run (the task
    is expected to handle its own errors).
    """

    def __init__(
        self,
        max_workers: int,
        max_pending: int,
        *,
        resume_at: int | None = None,
        name: str = "ordered-executor",
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_workers = max_workers
        self.max_pending = max_pending
        self.resume_at = max_pending // 2 if resume_at is None else resume_at
        if not 0 <= self.resume_at < max_pending:
            raise ValueError("resume_at must be >= 0 and below max_pending")
        lock = threading.Lock()
        # Idle workers wait on ``_cond`` and are woken ONE per ready key (notify_all
        # woke every idle thread of the pool per record: 64 threads fighting for one
        # lock and the GIL to find one task); ``wait_idle`` callers wait on ``_idle``.
        self._cond = threading.Condition(lock)
        self._idle = threading.Condition(lock)
        # ``wait_room`` callers (the poll loop while the executor is full); notified
        # only while one waits, so finishing a task costs nothing more otherwise.
        self._room = threading.Condition(lock)
        self._room_wanted = -1
        self._queues: dict[Hashable, deque[Task]] = {}
        self._ready: deque[Hashable] = deque()  # keys with queued tasks and no running task
        self._pending = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max_workers)
        ]
        for thread in self._threads:
            thread.start()

    # --- submitting ---------------------------------------------------------------------------
    def submit(self, key: Hashable, task: Task) -> None:
        """Queue ``task`` after every earlier task of ``key``; never blocks."""
        with self._cond:
            if self._closed:
                raise ExecutorClosed("The executor is shut down")
            queue = self._queues.get(key)
            if queue is None:
                # No task of this key is queued or running: it may start at once.
                self._queues[key] = deque([task])
                self._ready.append(key)
                self._cond.notify()
            else:
                queue.append(task)
            self._pending += 1

    @property
    def pending(self) -> int:
        """Tasks queued or running."""
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
        """How many more tasks fit below ``max_pending`` (0 when full)."""
        return max(0, self.max_pending - self.pending)

    # --- waiting and stopping -------------------------------------------------------------
    def wait_room(self, room: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s until at least ``room`` more tasks fit; True if they do."""
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
        """Wait up to ``timeout`` s until no task is pending; True if idle."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Refuse new tasks, let pending ones finish (up to ``timeout`` s), stop the threads.

        Returns True if every task finished. Tasks still queued after the
        timeout are dropped (their messages' offsets are never stored, so they
        are redelivered).
        """
        idle = self.wait_idle(timeout)
        with self._cond:
            self._closed = True
            if not idle:
                dropped = sum(len(q) for q in self._queues.values())
                _log.warning("Executor stopped with %d task(s) unfinished", dropped)
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
        while True:
            with self._cond:
                while not self._ready and not self._closed:
                    self._cond.wait()
                if not self._ready:
                    return  # closed and nothing ready
                key = self._ready.popleft()
                task = self._queues[key][0]
            try:
                task()
            except Exception:
                _log.exception("Task of key %r failed", key)
            with self._cond:
                queue = self._queues[key]
                queue.popleft()
                self._pending -= 1
                if queue:
                    # The key's next task runs after the ones of keys already waiting.
                    self._ready.append(key)
                    self._cond.notify()
                else:
                    del self._queues[key]
                if self._pending <= self._room_wanted:
                    self._room.notify_all()
                if not self._pending:
                    self._idle.notify_all()
