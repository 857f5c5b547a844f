"""Fakes of the relay's ports (an outbox source and an event sink), for unit tests.

Every fake enforces the relay's central invariant itself: the source refuses
to mark an event published unless a sink's broker acknowledged it. The contract
suites in ``tests/contract`` run against these and the real adapters.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from domain.outbox_ports import (
    ClaimedRow,
    Deliveries,
    Delivery,
    SinkBroken,
    SinkRejected,
    claimed_row,
)
from domain.records import OutboxEvent
from domain.repositories import RepositoryError


def make_event(seq: int, aggregate: uuid.UUID | None = None, event_type: str = "E") -> OutboxEvent:
    return OutboxEvent(
        event_id=uuid.uuid4(),
        aggregate_type="DraftOrder",
        aggregate_id=aggregate or uuid.uuid4(),
        org_id=uuid.uuid4(),
        event_type=event_type,
        payload={"seq": seq},
        headers={"event_id": "x", "attempt": "0"},
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        id=seq,
    )


@dataclass
class SentMessage:
    topic: str
    key: str
    value: bytes
    headers: Mapping[str, str]
    token: int


@dataclass
class FakeSink:
    """An asynchronous producer: acks on ``poll``/``flush`` as its knobs say.

    ``ack_per_poll`` limits acks per poll (None: all pending); ``hold`` keeps every
    ack back (flush still delivers unless ``hold_on_flush``); ``fail_once`` makes
    the first delivery of those tokens fail; ``on_poll`` runs before each poll.
    """

    ack_per_poll: int | None = None
    hold: bool = False
    hold_on_flush: bool = False
    fail_once: set[int] = field(default_factory=set)
    reject: set[int] = field(default_factory=set)
    broken_on_poll: int | None = None
    on_poll: Callable[[FakeSink], None] | None = None
    sent: list[SentMessage] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    max_outstanding: int = 0
    polls: int = 0
    flushes: int = 0
    closed: bool = False

    def send(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str], token: int
    ) -> None:
        assert not self.closed
        if token in self.reject:
            raise SinkRejected("message too large")
        self.sent.append(SentMessage(topic, key, value, dict(headers), token))
        self.pending.append(token)
        self.max_outstanding = max(self.max_outstanding, len(self.pending))

    def _deliver(self, limit: int | None) -> list[Delivery]:
        count = len(self.pending) if limit is None else min(limit, len(self.pending))
        batch, self.pending = self.pending[:count], self.pending[count:]
        reports = []
        for token in batch:
            if token in self.fail_once:
                self.fail_once.discard(token)
                reports.append(Delivery(token, False, "_MSG_TIMED_OUT"))
            else:
                self.acked.add(token)
                reports.append(Delivery(token, True))
        return reports

    def poll(self, timeout: float) -> Deliveries:
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll(self)
        if self.broken_on_poll is not None and self.polls >= self.broken_on_poll:
            self.broken_on_poll = None
            raise SinkBroken("fatal: out of order sequence")
        if self.hold:
            return Deliveries()
        return Deliveries.of(self._deliver(self.ack_per_poll))

    def flush(self, timeout: float) -> Deliveries:
        self.flushes += 1
        if self.hold_on_flush:
            return Deliveries()
        return Deliveries.of(self._deliver(None))

    def close(self) -> None:
        self.closed = True


class FakeSource:
    """The outbox table plus the leader lock; ``hidden`` ids are not committed yet."""

    def __init__(self, events: Sequence[OutboxEvent], sinks: list[FakeSink]) -> None:
        self.rows = {e.id: e for e in events if e.id is not None}
        self.published: set[int] = set()
        self.hidden: set[int] = set()
        self.sinks = sinks
        self.marks: list[list[int]] = []
        self.claims: list[tuple[int, int]] = []
        self.waits: list[float] = []
        self.lock_denials = 0
        self.lock_attempts = 0
        self.fail_claims = 0
        self.fail_marks = 0
        self.on_claim: Callable[[int], None] | None = None
        self.notify = False
        self.on_wait: Callable[[FakeSource], bool] | None = None
        self.leader = False
        self.closed = False
        # The relay calls the source from its database thread, tests from theirs.
        self.lock = threading.RLock()

    def add(self, event: OutboxEvent, *, hidden: bool = False) -> None:
        assert event.id is not None
        with self.lock:
            self.rows[event.id] = event
            if hidden:
                self.hidden.add(event.id)

    def try_acquire_leadership(self) -> bool:
        self.lock_attempts += 1
        if self.lock_denials > 0:
            self.lock_denials -= 1
            return False
        self.leader = True
        return True

    def release_leadership(self) -> None:
        self.leader = False

    def claim(self, after_id: int, limit: int) -> list[ClaimedRow]:
        if not self.leader:
            # Like the real store: a session without the lock refuses to claim.
            raise RepositoryError("This session does not hold the relay leader lock")
        self.claims.append((after_id, limit))
        if self.on_claim is not None:
            self.on_claim(after_id)
        if self.fail_claims > 0:
            self.fail_claims -= 1
            self.leader = False  # the session (and its lock) died
            raise RepositoryError("server closed the connection unexpectedly")
        with self.lock:
            ids = sorted(
                i
                for i in self.rows
                if i > after_id and i not in self.published and i not in self.hidden
            )
            return [claimed_row(self.rows[i]) for i in ids[:limit]]

    def mark_published(self, ids: Sequence[int]) -> int:
        if self.fail_marks > 0:
            self.fail_marks -= 1
            self.leader = False
            raise RepositoryError("terminating connection due to administrator command")
        with self.lock:
            acked = set().union(*(s.acked for s in self.sinks))
            not_acked = set(ids) - acked
            assert not not_acked, f"marked without a broker ack: {sorted(not_acked)}"
            self.marks.append(list(ids))
            before = len(self.published)
            self.published.update(ids)
            return len(self.published) - before

    def wait_for_events(self, timeout: float, wake_fd: int | None = None) -> bool:
        self.waits.append(timeout)
        if self.on_wait is not None:
            return self.on_wait(self)
        notified, self.notify = self.notify, False
        return notified

    def close(self) -> None:
        self.leader = False
        self.closed = True

    @property
    def unpublished(self) -> set[int]:
        return set(self.rows) - self.published
