"""The relay engine's helpers: backlog passes, stop pipe, database thread, completions."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from producer.relay_settings import RelayStats


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


class Completions:
    """Acknowledged event ids on their way to ``mark_published``, and the marks in flight.

    Ids wait here until a batch is due, then their mark runs on the
    :class:`DbThread` while the relay produces on. A mark that fails puts its ids
    back (they were delivered; the next mark, after a reconnect, records them)
    and its error is raised by :meth:`reap`, once the others are counted in
    ``stats.marked``.
    """

    def __init__(self, mark_published: Callable[[list[int]], int], stats: RelayStats) -> None:
        self._mark_published = mark_published
        self._stats = stats
        #: Acknowledged ids not yet submitted.
        self.waiting: list[int] = []
        self._marking: list[tuple[Future[int], list[int]]] = []

    def submit(self, db: DbThread) -> None:
        """Hand every waiting id to one mark on ``db``."""
        if self.waiting:
            ids, self.waiting = self.waiting, []
            self._marking.append((db.submit(self._mark_published, ids), ids))

    def reap(self, *, block: bool) -> None:
        """Count finished marks in ``stats.marked`` (waiting for every mark if ``block``).

        Raises the first failed mark's error, after its ids went back to :attr:`waiting`.
        """
        pending: list[tuple[Future[int], list[int]]] = []
        error: BaseException | None = None
        for future, ids in self._marking:
            if not block and not future.done():
                pending.append((future, ids))
                continue
            try:
                future.result()
            except BaseException as exc:
                self.waiting.extend(ids)
                error = error or exc
            else:
                self._stats.marked += len(ids)
        self._marking = pending
        if error is not None:
            raise error
