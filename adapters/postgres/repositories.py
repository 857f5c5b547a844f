"""SQLAlchemy implementations of the stores in ``domain.repositories``.

Each store works inside a session its unit of work owns and never commits.
ORM rows are converted to ``domain.records`` values at this boundary, and
unique-key violations become ``DuplicateKeyError`` (``claim`` instead
returns ``None``: losing the race for an idempotency key is a normal outcome).

The connection and draft-order stores are here; the push log's
(``push_log_store``) and the outbox's (``outbox_store``) have modules of their
own and are re-exported.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.postgres.models import (
    ACTIVE_CONNECTION_INDEX,
    DRAFT_ORDER_PKEY,
    ORDER_NUMBER_CONSTRAINT,
    DraftOrderRow,
    ERPConnection,
)
from domain.model import ConnectionStatus, DraftOrder, DraftOrderStatus
from domain.records import (
    ConnectionRecord,
    order_line_from_json,
    order_line_to_json,
)
from domain.repositories import DuplicateKeyError


def constraint_name(exc: IntegrityError) -> str | None:
    """Return the name of the violated constraint, as psycopg2 reports it."""
    diag = getattr(exc.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name if isinstance(name, str) else None


@contextmanager
def _savepoint(session: Session) -> Iterator[None]:
    """Run the block inside a SAVEPOINT.

    A constraint violation then leaves the surrounding transaction usable
    (PostgreSQL would abort the whole transaction otherwise).
    """
    with session.begin_nested():
        yield


# -- erp_connection -----------------------------------------------------------


def _connection_record(row: ERPConnection) -> ConnectionRecord:
    return ConnectionRecord(
        id=row.id,
        org_id=row.org_id,
        connector_type=row.connector_type,
        config_encrypted=bytes(row.config_encrypted),
        status=ConnectionStatus(row.status),
        last_test_at=row.last_test_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlConnectionStore:
    """``ConnectionStore`` over the ``erp_connection`` table."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, connection_id: uuid.UUID) -> ConnectionRecord | None:
        """Return the connection with this id, if any."""
        row = self._session.get(ERPConnection, connection_id)
        return None if row is None else _connection_record(row)

    def get_active(self, org_id: uuid.UUID) -> ConnectionRecord | None:
        """Return the organisation's ACTIVE connection, if it has one."""
        row = self._session.scalars(
            select(ERPConnection).where(
                ERPConnection.org_id == org_id,
                ERPConnection.status == ConnectionStatus.ACTIVE.value,
            )
        ).one_or_none()
        return None if row is None else _connection_record(row)

    def add(self, record: ConnectionRecord) -> ConnectionRecord:
        """Insert ``record``; ``DuplicateKeyError`` if the org already has an active one."""
        row = ERPConnection(
            id=record.id,
            org_id=record.org_id,
            connector_type=record.connector_type,  # validated by ERPConnection
            config_encrypted=record.config_encrypted,
            status=record.status.value,
            last_test_at=record.last_test_at,
        )
        if record.created_at is not None:
            row.created_at = record.created_at
        if record.updated_at is not None:
            row.updated_at = record.updated_at
        try:
            with _savepoint(self._session):
                self._session.add(row)
                self._session.flush()
        except IntegrityError as exc:
            constraint = constraint_name(exc)
            if constraint == ACTIVE_CONNECTION_INDEX:
                raise DuplicateKeyError(
                    f"Organisation {record.org_id} already has an active ERP connection",
                    constraint=constraint,
                ) from exc
            raise
        return _connection_record(row)

    def disable(self, connection_id: uuid.UUID, *, now: datetime) -> ConnectionRecord | None:
        """Mark the connection DISABLED and flush, so a replacement can be added next."""
        row = self._session.get(ERPConnection, connection_id)
        if row is None:
            return None
        row.status = ConnectionStatus.DISABLED.value
        row.updated_at = now
        self._session.flush()
        return _connection_record(row)

    def mark_tested(self, connection_id: uuid.UUID, *, at: datetime) -> None:
        """Set ``last_test_at``."""
        row = self._session.get(ERPConnection, connection_id)
        if row is None:
            raise KeyError(f"No ERP connection {connection_id}")
        row.last_test_at = at
        row.updated_at = at
        self._session.flush()

    def list(self, org_id: uuid.UUID | None = None) -> Sequence[ConnectionRecord]:
        """Return the connections of one organisation (or all), oldest first."""
        query = select(ERPConnection).order_by(ERPConnection.created_at, ERPConnection.id)
        if org_id is not None:
            query = query.where(ERPConnection.org_id == org_id)
        return [_connection_record(row) for row in self._session.scalars(query)]


def _draft_order(row: DraftOrderRow) -> DraftOrder:
    return DraftOrder(
        id=row.id,
        org_id=row.org_id,
        order_number=row.order_number,
        customer_code=row.customer_code,
        currency=row.currency,
        lines=tuple(order_line_from_json(line) for line in row.lines),
        status=DraftOrderStatus(row.status),
        notes=row.notes,
        extra=dict(row.extra),
    )


def _apply(row: DraftOrderRow, order: DraftOrder, now: datetime) -> None:
    row.order_number = order.order_number
    row.customer_code = order.customer_code
    row.currency = order.currency
    row.status = order.status.value
    row.lines = [order_line_to_json(line) for line in order.lines]
    row.notes = order.notes
    row.extra = dict(order.extra)
    row.updated_at = now
    if order.status is DraftOrderStatus.APPROVED:
        if row.approved_at is None:
            row.approved_at = now
    else:
        row.approved_at = None


class SqlDraftOrderStore:
    """``DraftOrderStore`` over the ``draft_order`` table."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def _row(
        self, org_id: uuid.UUID, order_id: uuid.UUID, *, for_update: bool = False
    ) -> DraftOrderRow | None:
        query = select(DraftOrderRow).where(
            DraftOrderRow.org_id == org_id, DraftOrderRow.id == order_id
        )
        if for_update:
            query = query.with_for_update()
        return self._session.scalars(query).one_or_none()

    def get(
        self, org_id: uuid.UUID, order_id: uuid.UUID, *, for_update: bool = False
    ) -> DraftOrder | None:
        """Return the organisation's draft order with this id (optionally row-locked)."""
        row = self._row(org_id, order_id, for_update=for_update)
        return None if row is None else _draft_order(row)

    def get_by_number(self, org_id: uuid.UUID, order_number: str) -> DraftOrder | None:
        """Return the organisation's draft order with this order number, if any."""
        row = self._session.scalars(
            select(DraftOrderRow).where(
                DraftOrderRow.org_id == org_id, DraftOrderRow.order_number == order_number
            )
        ).one_or_none()
        return None if row is None else _draft_order(row)

    def add(self, order: DraftOrder, *, now: datetime) -> None:
        """Insert ``order``; ``DuplicateKeyError`` if its id or number is taken."""
        row = DraftOrderRow(id=order.id, org_id=order.org_id, created_at=now)
        _apply(row, order, now)
        self._flush_new(row, order)

    def update(self, order: DraftOrder, *, now: datetime) -> None:
        """Overwrite the stored order with ``order``'s fields."""
        row = self._row(order.org_id, order.id)
        if row is None:
            raise KeyError(f"No draft order {order.id} in organisation {order.org_id}")
        _apply(row, order, now)
        self._flush_new(row, order)

    def _flush_new(self, row: DraftOrderRow, order: DraftOrder) -> None:
        try:
            with _savepoint(self._session):
                self._session.add(row)
                self._session.flush()
        except IntegrityError as exc:
            constraint = constraint_name(exc)
            if constraint == ORDER_NUMBER_CONSTRAINT:
                message = (
                    f"Order number {order.order_number!r} is already used "
                    f"in organisation {order.org_id}"
                )
            elif constraint == DRAFT_ORDER_PKEY:
                message = f"Draft order {order.id} already exists"
            else:
                raise
            raise DuplicateKeyError(message, constraint=constraint) from exc


# The other stores, re-exported: the units of work and callers import them from here.
from adapters.postgres.outbox_store import OutboxValueEncoder, SqlOutboxStore  # noqa: E402
from adapters.postgres.push_log_store import SqlPushLogStore  # noqa: E402

__all__ = [
    "OutboxValueEncoder",
    "SqlConnectionStore",
    "SqlDraftOrderStore",
    "SqlOutboxStore",
    "SqlPushLogStore",
    "constraint_name",
]
