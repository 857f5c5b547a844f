"""The relay engine's helpers: a pass over the backlog, the stop pipe, the database thread."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar


@dataclass
class Pass:
    """State of one scan over the unpublished rows, starting at cursor 0."""

    cursor: int = 0
    sent: int = 0
    started: float = 0.0
    #: Aggregates (keys) with a refused event in this pass: their later events wait.
    blocked: set[str] = field(default_factory=set)


class Waker:
    """A self-pipe: lets :meth:`OutboxRelay.stop` interrupt a ``select()`` wait.

    ``wake`` never blocks (it may run in a signal handler while the main thread
    is inside ``close``) and never writes to a closed descriptor, whose number
    could already belong to another file.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self._lock = threading.Lock()
        self._closed = False

    def wake(self) -> None:
        """Interrupt a wait on :attr:`read_fd` (never blocks)."""
        if not self._lock.acquire(blocking=False):
            return  # being closed, or another caller is waking it right now
        try:
            if not self._closed:
                # A full pipe means it is already woken: fine.
                with contextlib.suppress(BlockingIOError):
                    os.write(self.write_fd, b"\0")
        finally:
            self._lock.release()

    def drain(self) -> None:
        """Read every pending wake-up byte."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.read_fd, 512):
                pass

    def close(self) -> None:
        """Close both ends (later wakes do nothing)."""
        with self._lock:
            self._closed = True
            os.close(self.read_fd)
            os.close(self.write_fd)


_T = TypeVar("_T")


class DbThread:
    """Runs every call to the source on one background thread, in submission order.

    This is what pipelines the database with the rest: while the main thread
    encodes and produces batch k, this thread already runs the claim of batch
    k+1 and the completion of earlier batches (psycopg2 releases the GIL while
    it waits for the server). One thread keeps the source's single session
    free of concurrent use.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-db")

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """Queue ``fn(*args)``; its future."""
        return self._executor.submit(fn, *args)

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the thread and wait for its result."""
        return self._executor.submit(fn, *args).result()

    def close(self) -> None:
        """Finish what was queued and stop the thread."""
        self._executor.shutdown(wait=True)
