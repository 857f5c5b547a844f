"""SQLAlchemy implementations of the stores in ``domain.repositories``.

Each store works inside a session its unit of work owns and never commits.
ORM rows are converted to ``domain.records`` values at this boundary, and
unique-key violations become ``DuplicateKeyError`` (``claim`` instead
returns ``None``: losing the race for an idempotency key is a normal outcome).

The push log is written with Core statements (``INSERT ... ON CONFLICT DO
NOTHING RETURNING``, conditional ``UPDATE ... RETURNING``) so that claiming
and recording outcomes are single atomic statements, safe between workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.postgres.models import (
    ACTIVE_CONNECTION_INDEX,
    DRAFT_ORDER_PKEY,
    ORDER_NUMBER_CONSTRAINT,
    DraftOrderRow,
    ERPConnection,
    ERPPushLog,
    OutboxEventRow,
)
from domain.model import ConnectionStatus, DraftOrder, DraftOrderStatus, PushStatus
from domain.records import (
    ConnectionRecord,
    OutboxEvent,
    PushLogEntry,
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


# -- erp_push_log -------------------------------------------------------------

_PUSH_LOG: Table = ERPPushLog.__table__  # type: ignore[assignment]


def _push_log_entry(row: RowMapping) -> PushLogEntry:
    return PushLogEntry(
        id=row["id"],
        org_id=row["org_id"],
        draft_order_id=row["draft_order_id"],
        idempotency_key=row["idempotency_key"],
        status=PushStatus(row["status"]),
        connector_type=row["connector_type"],
        request_json=row["request_json"],
        response_json=row["response_json"],
        error_message=row["error_message"],
        retry_count=row["retry_count"],
        attempt=row["attempt"],
        latency_ms=row["latency_ms"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        lease_expires_at=row["lease_expires_at"],
        push_round=row["push_round"],
        previous_idempotency_key=row["previous_idempotency_key"],
    )


class SqlPushLogStore:
    """``PushLogStore`` over the ``erp_push_log`` table."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def _one(self, *conditions: ColumnElement[bool]) -> PushLogEntry | None:
        row = self._session.execute(select(_PUSH_LOG).where(*conditions)).mappings().first()
        return None if row is None else _push_log_entry(row)

    def get(self, entry_id: uuid.UUID) -> PushLogEntry | None:
        """Return the row with this id, if any."""
        return self._one(_PUSH_LOG.c.id == entry_id)

    def find(self, idempotency_key: str) -> PushLogEntry | None:
        """Return the row of this idempotency key, if any."""
        return self._one(_PUSH_LOG.c.idempotency_key == idempotency_key)

    def find_success(self, org_id: uuid.UUID, draft_order_id: uuid.UUID) -> PushLogEntry | None:
        """Return the (earliest) SUCCESS row of (org, draft order), if any."""
        row = (
            self._session.execute(
                select(_PUSH_LOG)
                .where(
                    _PUSH_LOG.c.org_id == org_id,
                    _PUSH_LOG.c.draft_order_id == draft_order_id,
                    _PUSH_LOG.c.status == PushStatus.SUCCESS.value,
                )
                .order_by(_PUSH_LOG.c.attempt, _PUSH_LOG.c.created_at)
                .limit(1)
            )
            .mappings()
            .first()
        )
        return None if row is None else _push_log_entry(row)

    def list_for_order(
        self, org_id: uuid.UUID, draft_order_id: uuid.UUID
    ) -> Sequence[PushLogEntry]:
        """Return every attempt of (org, draft order), by push round then attempt."""
        rows = self._session.execute(
            select(_PUSH_LOG)
            .where(_PUSH_LOG.c.org_id == org_id, _PUSH_LOG.c.draft_order_id == draft_order_id)
            .order_by(_PUSH_LOG.c.push_round, _PUSH_LOG.c.attempt, _PUSH_LOG.c.created_at)
        ).mappings()
        return [_push_log_entry(row) for row in rows]

    def claim(self, entry: PushLogEntry) -> PushLogEntry | None:
        """Insert ``entry`` unless its idempotency key exists; ``None`` if it does.

        ``ON CONFLICT DO NOTHING`` waits for a concurrent inserter of the same
        key to finish, so exactly one of two racing transactions gets the row.
        """
        stmt = (
            pg_insert(_PUSH_LOG)
            .values(
                id=entry.id,
                org_id=entry.org_id,
                draft_order_id=entry.draft_order_id,
                connector_type=entry.connector_type,
                status=entry.status.value,
                request_json=entry.request_json,
                response_json=entry.response_json,
                error_message=entry.error_message,
                idempotency_key=entry.idempotency_key,
                retry_count=entry.retry_count,
                latency_ms=entry.latency_ms,
                attempt=entry.attempt,
                lease_expires_at=entry.lease_expires_at,
                push_round=entry.push_round,
                previous_idempotency_key=entry.previous_idempotency_key,
                **_timestamps(entry.created_at, entry.updated_at),
            )
            .on_conflict_do_nothing(index_elements=[_PUSH_LOG.c.idempotency_key])
            .returning(*_PUSH_LOG.c)
        )
        row = self._session.execute(stmt).mappings().first()
        return None if row is None else _push_log_entry(row)

    def take_over(
        self,
        idempotency_key: str,
        *,
        now: datetime,
        lease_expires_at: datetime,
        connector_type: str | None = None,
    ) -> PushLogEntry | None:
        """Renew the lease of a PENDING row whose lease expired; ``None`` if not.

        ``connector_type`` (if given) is recorded: a requested push again has
        none until a worker resolves the connection as it takes the row.
        """
        values: dict[str, Any] = {"lease_expires_at": lease_expires_at, "updated_at": now}
        if connector_type is not None:
            values["connector_type"] = connector_type
        # The WHERE clause is re-checked after a concurrent updater commits
        # (READ COMMITTED), so two workers cannot both take the same claim.
        stmt = (
            update(_PUSH_LOG)
            .where(
                _PUSH_LOG.c.idempotency_key == idempotency_key,
                _PUSH_LOG.c.status == PushStatus.PENDING.value,
                (_PUSH_LOG.c.lease_expires_at.is_(None)) | (_PUSH_LOG.c.lease_expires_at <= now),
            )
            .values(**values)
            .returning(*_PUSH_LOG.c)
        )
        row = self._session.execute(stmt).mappings().first()
        return None if row is None else _push_log_entry(row)

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
        """Record the outcome of a PENDING attempt; ``None`` if it is not PENDING."""
        stmt = (
            update(_PUSH_LOG)
            .where(
                _PUSH_LOG.c.id == entry_id,
                _PUSH_LOG.c.status == PushStatus.PENDING.value,
            )
            .values(
                status=status.value,
                response_json=response_json,
                error_message=error_message,
                latency_ms=latency_ms,
                lease_expires_at=None,
                updated_at=now,
            )
            .returning(*_PUSH_LOG.c)
        )
        row = self._session.execute(stmt).mappings().first()
        return None if row is None else _push_log_entry(row)


def _timestamps(created_at: datetime | None, updated_at: datetime | None) -> dict[str, datetime]:
    """Explicit timestamps, or none so that the server default ``now()`` applies."""
    values: dict[str, datetime] = {}
    if created_at is not None:
        values["created_at"] = created_at
    if updated_at is not None:
        values["updated_at"] = updated_at
    return values


# -- draft_order --------------------------------------------------------------


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


# -- outbox_event -------------------------------------------------------------


def _outbox_event(row: OutboxEventRow) -> OutboxEvent:
    return OutboxEvent(
        id=row.id,
        event_id=row.event_id,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        org_id=row.org_id,
        event_type=row.event_type,
        payload=dict(row.payload),
        headers={str(k): str(v) for k, v in row.headers.items()},
        created_at=row.created_at,
        published_at=row.published_at,
        value=row.value,
    )


#: Encodes an outbox event's Kafka value as it is written (``None``: leave it to the relay).
OutboxValueEncoder = Callable[[OutboxEvent], bytes | None]


class SqlOutboxStore:
    """``OutboxStore`` over the ``outbox_event`` table.

    With an ``encoder``, each event's Kafka value is encoded in the writer's
    transaction and stored with it, so the relay only moves bytes; an event the
    encoder refuses (it raises) is not written, and the writer sees the error.
    """

    def __init__(self, session: Session, encoder: OutboxValueEncoder | None = None) -> None:
        self._session = session
        self._encoder = encoder

    @property
    def session(self) -> Session:
        """The session this store writes in (the one-statement approval writes there too)."""
        return self._session

    @property
    def encoder(self) -> OutboxValueEncoder | None:
        """The encoder of each event's Kafka value at write time (``None``: the relay's job)."""
        return self._encoder

    def add(self, event: OutboxEvent) -> OutboxEvent:
        """Insert ``event`` and return it with its BIGSERIAL ``id`` (and encoded value)."""
        value = event.value
        if value is None and self._encoder is not None:
            value = self._encoder(event)
        row = OutboxEventRow(
            event_id=event.event_id,
            aggregate_type=event.aggregate_type,
            aggregate_id=event.aggregate_id,
            org_id=event.org_id,
            event_type=event.event_type,
            payload=event.payload,
            headers=dict(event.headers),
            created_at=event.created_at,
            published_at=event.published_at,
            value=value,
        )
        self._session.add(row)
        # Flushing assigns the sequence id, which the caller gets back.
        self._session.flush()
        return event.stored_as(row.id, value)

    def get(self, event_id: uuid.UUID) -> OutboxEvent | None:
        """Return the event with this ``event_id``, if any."""
        row = self._session.scalars(
            select(OutboxEventRow).where(OutboxEventRow.event_id == event_id)
        ).one_or_none()
        return None if row is None else _outbox_event(row)

    def list_unpublished(self, limit: int = 100) -> Sequence[OutboxEvent]:
        """Return up to ``limit`` unpublished events in publish (``id``) order."""
        rows = self._session.scalars(
            select(OutboxEventRow)
            .where(OutboxEventRow.published_at.is_(None))
            .order_by(OutboxEventRow.id)
            .limit(limit)
        )
        return [_outbox_event(row) for row in rows]
