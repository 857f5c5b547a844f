"""Contiguous offset tracking: which offset of each partition may be stored.

Messages of one partition are processed concurrently (different keys run in
parallel), so they complete out of order. Kafka stores ONE position per
partition, meaning "everything before this is done"; storing the offset of a
message completed early would skip a slower one that is still running if the
process died. :class:`OffsetTracker` therefore only releases the contiguous
prefix of completed messages: the store position moves past a message once it
and every earlier tracked message of its partition completed (after their
database commit).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Generic, Protocol, TypeVar


class TrackedMessage(Protocol):
    """What the tracker needs of a message: its partition and offset."""

    @property
    def offset(self) -> int:
        """The message's offset in its partition."""
        ...


M = TypeVar("M", bound=TrackedMessage)
P = TypeVar("P", bound=Hashable)


class OffsetTracker(Generic[P, M]):
    """Tracks in-flight messages per partition and releases the completed contiguous prefix.

    Usage: :meth:`track` each message when it is dispatched (in offset order per
    partition), :meth:`complete` it once its work is durable; ``complete``
    returns the last message of the newly completed prefix, whose next offset
    is what to store (None if the prefix did not move). Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # partition -> offset -> [message, done], in tracking (= offset) order
        self._pending: dict[P, OrderedDict[int, list[object]]] = {}

    def track(self, partition: P, message: M) -> None:
        """Start tracking ``message`` (offsets of one partition in increasing order)."""
        with self._lock:
            queue = self._pending.setdefault(partition, OrderedDict())
            if queue:
                last = next(reversed(queue))
                if message.offset <= last:
                    raise ValueError(
                        f"Offset {message.offset} tracked after {last} in the same partition"
                    )
            queue[message.offset] = [message, False]

    def complete(self, partition: P, message: M) -> M | None:
        """Mark ``message`` done; return the end of the newly completed prefix, if it moved.

        Completing a message of a forgotten partition (revoked meanwhile) or one
        never tracked returns None: its offset must not be stored by this member.
        """
        with self._lock:
            queue = self._pending.get(partition)
            if queue is None or message.offset not in queue:
                return None
            queue[message.offset][1] = True
            released: M | None = None
            while queue:
                first_offset = next(iter(queue))
                entry = queue[first_offset]
                if not entry[1]:
                    break
                del queue[first_offset]
                released = entry[0]  # type: ignore[assignment]
            return released

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop every tracked message of ``partitions`` (revoked or lost)."""
        with self._lock:
            for partition in partitions:
                self._pending.pop(partition, None)

    def in_flight(self, partition: P | None = None) -> int:
        """How many tracked messages are not yet released (of one partition, or all)."""
        with self._lock:
            if partition is not None:
                return len(self._pending.get(partition, ()))
            return sum(len(q) for q in self._pending.values())

    def partitions(self) -> list[P]:
        """Partitions with messages still tracked."""
        with self._lock:
            return [p for p, q in self._pending.items() if q]
