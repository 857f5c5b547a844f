"""Persistence ports: the stores and the unit of work the services depend on.

The producer and the consumer are written against these; the SQLAlchemy
implementations live in ``adapters.postgres`` and in-memory fakes in
``tests/fakes.py``. Stores take and return ``domain.records`` values and
``DraftOrder`` entities, never ORM objects.

A ``UnitOfWork`` is one database transaction: use it as a context manager and
call ``commit()``; leaving the block without committing rolls back
(cosmicpython style), so a failure half-way writes nothing.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from domain.errors import OrderFlowError
from domain.model import DraftOrder, PushStatus
from domain.records import ConnectionRecord, OutboxEvent, PushLogEntry


class RepositoryError(OrderFlowError):
    """Base class of errors raised by stores."""


class DuplicateKeyError(RepositoryError):
    """A write would violate a unique key (``constraint`` names it when known)."""

    def __init__(self, message: str, *, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class ConnectionStore(Protocol):
    """The ``erp_connection`` table: at most one ACTIVE connection per organisation."""

    def get(self, connection_id: uuid.UUID) -> ConnectionRecord | None:
        """Return the connection with this id, if any."""
        ...

    def get_active(self, org_id: uuid.UUID) -> ConnectionRecord | None:
        """Return the organisation's ACTIVE connection, if it has one."""
        ...

    def add(self, record: ConnectionRecord) -> ConnectionRecord:
        """Store a new connection.

        Raises ``DuplicateKeyError`` if ``record`` is ACTIVE and the
        organisation already has an ACTIVE connection (disable it first, in
        the same unit of work, to replace it) and ``ValueError`` for an
        invalid ``connector_type``.
        """
        ...

    def disable(self, connection_id: uuid.UUID, *, now: datetime) -> ConnectionRecord | None:
        """Mark the connection DISABLED; return it, or None if there is no such id."""
        ...

    def mark_tested(self, connection_id: uuid.UUID, *, at: datetime) -> None:
        """Record a successful ``test_connection`` (``last_test_at``)."""
        ...

    def list(self, org_id: uuid.UUID | None = None) -> Sequence[ConnectionRecord]:
        """Return the connections of one organisation (or all), oldest first."""
        ...


class PushLogStore(Protocol):
    """The ``erp_push_log`` table: one row per push attempt, unique idempotency key."""

    def get(self, entry_id: uuid.UUID) -> PushLogEntry | None:
        """Return the row with this id, if any."""
        ...

    def find(self, idempotency_key: str) -> PushLogEntry | None:
        """Return the row of this idempotency key, if any (the seed's dedupe check)."""
        ...

    def find_success(self, org_id: uuid.UUID, draft_order_id: uuid.UUID) -> PushLogEntry | None:
        """Return a SUCCESS row of (org, draft order), if the order was pushed."""
        ...

    def list_for_order(
        self, org_id: uuid.UUID, draft_order_id: uuid.UUID
    ) -> Sequence[PushLogEntry]:
        """Return every attempt of (org, draft order), by push round then attempt."""
        ...

    def claim(self, entry: PushLogEntry) -> PushLogEntry | None:
        """Insert ``entry`` (normally PENDING) unless its idempotency key exists.

        Returns the stored row, or ``None`` if another transaction holds the
        key: the caller lost the race and must not call the ERP. Never
        raises on a duplicate key, and leaves the transaction usable.
        """
        ...

    def take_over(
        self,
        idempotency_key: str,
        *,
        now: datetime,
        lease_expires_at: datetime,
        connector_type: str | None = None,
    ) -> PushLogEntry | None:
        """Claim a PENDING row whose lease expired before ``now`` (or that has none).

        ``connector_type``, if given, is recorded on the row (a requested push
        again has none yet). Returns the row with the new lease, or ``None`` if it is not PENDING
        any more or its lease is still live (someone else got it first).
        """
        ...

    def update_outcome(
        self,
        entry_id: uuid.UUID,
        *,
        status: PushStatus,
        now: datetime,
        response_json: dict[str, Any] | None = None,
        error_message: str | None = None,
        latency_ms: int | None = None,
    ) -> PushLogEntry | None:
        """Record the outcome of a PENDING attempt and clear its lease.

        Only a PENDING row is updated (the first outcome written wins, and a
        final row never changes); returns ``None`` if the row is not PENDING.
        """
        ...


class DraftOrderStore(Protocol):
    """The ``draft_order`` table; every lookup is scoped to an organisation."""

    def get(
        self, org_id: uuid.UUID, order_id: uuid.UUID, *, for_update: bool = False
    ) -> DraftOrder | None:
        """Return the organisation's draft order with this id, if any.

        ``for_update`` locks the row until the unit of work ends, so two
        concurrent approvals of one order are serialised.
        """
        ...

    def get_by_number(self, org_id: uuid.UUID, order_number: str) -> DraftOrder | None:
        """Return the organisation's draft order with this order number, if any."""
        ...

    def add(self, order: DraftOrder, *, now: datetime) -> None:
        """Insert a new draft order (``approved_at = now`` if it is APPROVED).

        Raises ``DuplicateKeyError`` if the id or (org, order_number) is taken.
        """
        ...

    def update(self, order: DraftOrder, *, now: datetime) -> None:
        """Overwrite an existing draft order with ``order``'s fields.

        ``approved_at`` is set to ``now`` when the order becomes APPROVED.
        Raises ``KeyError`` if there is no such order in ``order.org_id``.
        """
        ...


class OutboxStore(Protocol):
    """The ``outbox_event`` table, written in the same transaction as its cause."""

    def add(self, event: OutboxEvent) -> OutboxEvent:
        """Store ``event``; return it with its publish-order ``id`` assigned."""
        ...

    def get(self, event_id: uuid.UUID) -> OutboxEvent | None:
        """Return the event with this ``event_id``, if any."""
        ...

    def list_unpublished(self, limit: int = 100) -> Sequence[OutboxEvent]:
        """Return up to ``limit`` unpublished events in publish order."""
        ...


#: Why an approval wrote nothing.
RefusalReason = Literal["already_approved", "order_number_taken", "id_taken"]


@dataclass(frozen=True)
class ApprovalRefused:
    """The approval wrote nothing; ``reason`` says why.

    ``namesake_id`` is the order holding the number (``order_number_taken``),
    when it could be found; ``constraint`` the unique key the store reported.
    """

    reason: RefusalReason
    namesake_id: uuid.UUID | None = None
    constraint: str | None = None


class ApprovalWriter(Protocol):
    """Writes an approved order and its outbox event together, or neither.

    The one write path of an approval (``producer.approval``): the SQL adapter
    does it in one statement, the in-memory fake through its tables.
    """

    def write(
        self, order: DraftOrder, event: OutboxEvent, *, now: datetime
    ) -> OutboxEvent | ApprovalRefused:
        """Store APPROVED ``order`` and ``event`` in the unit of work's transaction.

        Inserts a new order or overwrites the organisation's DRAFT of that id;
        returns the stored event (sequence ``id`` and encoded ``value``), or
        :class:`ApprovalRefused` when nothing was written: the order was
        approved already, its number is another order's, or its id is another
        organisation's. The caller commits.
        """
        ...


class UnitOfWork(ABC):
    """One transaction over every store; rolls back unless ``commit()`` was called.

    Usage::

        with uow:
            uow.draft_orders.add(order, now=now)
            uow.outbox.add(event)
            uow.commit()

    A unit of work may be entered again after it exited (each ``with`` block
    is a new transaction) but must not be nested.
    """

    connections: ConnectionStore
    push_log: PushLogStore
    draft_orders: DraftOrderStore
    outbox: OutboxStore
    approvals: ApprovalWriter

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Rolling back after a commit is a no-op, so this only discards work
        # that was not committed explicitly: the block's failure writes nothing.
        self.rollback()

    @abstractmethod
    def commit(self) -> None:
        """Make every write of this unit of work durable."""

    @abstractmethod
    def rollback(self) -> None:
        """Discard every uncommitted write of this unit of work."""
