"""``SqlOutboxStore``: the writers' side of ``outbox_event``.

The relay's side is ``adapters.postgres.outbox_relay``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.postgres.models import (
    OutboxEventRow,
)
from domain.records import (
    OutboxEvent,
)

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
        """Return up to ``limit`` unpublished events in publish (``id``) order.

        Every ``outbox_event`` row is unpublished: the relay deletes what it sent.
        """
        rows = self._session.scalars(
            select(OutboxEventRow).order_by(OutboxEventRow.id).limit(limit)
        )
        return [_outbox_event(row) for row in rows]
