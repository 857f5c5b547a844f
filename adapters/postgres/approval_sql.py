"""Approving a draft order in ONE SQL statement: the order and its outbox event together.

:class:`SqlApprovalWriter` is the SQL units of work's ``approvals``
(``domain.repositories.ApprovalWriter``), the one write path of
``producer.approval``. Through the ORM stores an approval would cost seven round
trips and the flush machinery (``SELECT ... FOR UPDATE``, the lookup by order
number, ``SAVEPOINT``, ``INSERT`` or ``UPDATE``, ``RELEASE``, the outbox
``INSERT``, ``COMMIT``). Here the order's upsert and the event's insert are one
statement (a data-modifying CTE), sent as
plain driver SQL (no ORM flush, no statement compilation), so an approval is
``BEGIN``, this statement and ``COMMIT``.

What the statement guarantees:

* ``INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE d.status = 'DRAFT'`` locks
  an existing row as ``SELECT ... FOR UPDATE`` did, so concurrent approvals of
  one order are serialised, and only a DRAFT of the same organisation is
  overwritten: an APPROVED order (or another organisation's id) yields no row.
* The outbox row is inserted ``FROM`` the upsert's ``RETURNING``: no approved
  order, no event; an order, always its event (one statement, one transaction).
  Its sequence id is drawn after the order row is locked, so the events of one
  order are numbered in commit order, as before.
* A taken order number violates ``uq_draft_order_org_order_number`` (ON CONFLICT
  only absorbs the primary key). The statement then fails as a whole, and the
  number's owner is looked up afterwards for the error message.

Only the refusals (rare) cost extra queries, to say why nothing was written.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.postgres.models import DRAFT_ORDER_PKEY, ORDER_NUMBER_CONSTRAINT
from adapters.postgres.repositories import OutboxValueEncoder, constraint_name
from domain.model import DraftOrder, DraftOrderStatus
from domain.records import OutboxEvent, order_line_to_json
from domain.repositories import ApprovalRefused

# psycopg2 ``pyformat`` parameters. Ids and JSON are sent as text and cast on the
# server: no per-call type adaptation in Python. ``value`` is
# cast because an untyped NULL in a SELECT list would be taken as text.
_APPROVE_SQL = """
WITH approved AS (
    INSERT INTO draft_order AS d
        (id, org_id, order_number, customer_code, currency, status, lines, notes, extra,
         created_at, updated_at, approved_at)
    VALUES
        (%(order_id)s::uuid, %(org_id)s::uuid, %(order_number)s, %(customer_code)s,
         %(currency)s, 'APPROVED', %(lines)s::jsonb, %(notes)s, %(extra)s::jsonb,
         %(now)s, %(now)s, %(now)s)
    ON CONFLICT (id) DO UPDATE SET
        order_number = EXCLUDED.order_number,
        customer_code = EXCLUDED.customer_code,
        currency = EXCLUDED.currency,
        status = 'APPROVED',
        lines = EXCLUDED.lines,
        notes = EXCLUDED.notes,
        extra = EXCLUDED.extra,
        updated_at = EXCLUDED.updated_at,
        approved_at = COALESCE(d.approved_at, EXCLUDED.approved_at)
    WHERE d.org_id = EXCLUDED.org_id AND d.status = 'DRAFT'
    RETURNING d.id
)
INSERT INTO outbox_event
    (event_id, aggregate_type, aggregate_id, org_id, event_type, payload, headers,
     created_at, value)
SELECT %(event_id)s::uuid, %(aggregate_type)s, approved.id, %(event_org_id)s::uuid,
       %(event_type)s, %(payload)s::jsonb, %(headers)s::jsonb, %(created_at)s,
       %(value)s::bytea
FROM approved
RETURNING id
"""

_ORDER_BY_ID_SQL = "SELECT org_id, status FROM draft_order WHERE id = %(order_id)s::uuid"

_ORDER_BY_NUMBER_SQL = (
    "SELECT id FROM draft_order WHERE org_id = %(org_id)s::uuid AND order_number = %(order_number)s"
)


def _json(value: object) -> str:
    # The text the ORM's JSONB type would send (json.dumps defaults); JSONB
    # re-parses it, so only the content matters.
    return json.dumps(value)


class SqlApprovalWriter:
    """The :class:`~domain.repositories.ApprovalWriter` of a session: one statement."""

    def __init__(self, session: Session, encoder: OutboxValueEncoder | None) -> None:
        self.session = session
        self.encoder = encoder

    def write(
        self, order: DraftOrder, event: OutboxEvent, *, now: datetime
    ) -> OutboxEvent | ApprovalRefused:
        """Store ``order`` as APPROVED and ``event`` in the session's transaction.

        Returns the stored event (its sequence ``id`` and encoded ``value``), or
        :class:`ApprovalRefused` when nothing was written: the order is approved
        already, its number is another order's, or its id is another
        organisation's. The caller commits (or rolls back). After an
        ``order_number_taken`` refusal the session's transaction was rolled back
        (the failed statement had aborted it). The outbox encoder runs first: an
        event it refuses (it raises) is never sent to the database.
        """
        if order.status is not DraftOrderStatus.APPROVED:
            raise ValueError(f"an approval stores APPROVED orders, got {order.status.value}")
        value = event.value
        if value is None and self.encoder is not None:
            value = self.encoder(event)
        params = {
            "order_id": str(order.id),
            "org_id": str(order.org_id),
            "order_number": order.order_number,
            "customer_code": order.customer_code,
            "currency": order.currency,
            "lines": _json([order_line_to_json(line) for line in order.lines]),
            "notes": order.notes,
            "extra": _json(dict(order.extra)),
            "now": now,
            "event_id": str(event.event_id),
            "aggregate_type": event.aggregate_type,
            "event_org_id": str(event.org_id),
            "event_type": event.event_type,
            "payload": _json(event.payload),
            "headers": _json(dict(event.headers)),
            "created_at": event.created_at,
            "value": value,
        }
        session = self.session
        if session.autoflush:
            # What the ORM's own queries would do first: a caller-owned session's pending
            # changes reach the database before this statement, as they would before
            # a store's query (a no-op for the usual fresh session).
            session.flush()
        connection = session.connection()
        try:
            sequence_id = connection.exec_driver_sql(_APPROVE_SQL, params).scalar()
        except IntegrityError as exc:
            constraint = constraint_name(exc)
            if constraint != ORDER_NUMBER_CONSTRAINT:
                raise
            # The failed statement aborted the transaction; the lookup needs a new one.
            session.rollback()
            return ApprovalRefused(
                "order_number_taken", _namesake(session, order), constraint=constraint
            )
        if sequence_id is not None:
            return event.stored_as(int(sequence_id), value)
        return _why_not_written(session, order)


def _namesake(session: Session, order: DraftOrder) -> uuid.UUID | None:
    """Another order of the organisation holding ``order``'s number, if any."""
    row = (
        session.connection()
        .exec_driver_sql(
            _ORDER_BY_NUMBER_SQL,
            {"org_id": str(order.org_id), "order_number": order.order_number},
        )
        .first()
    )
    if row is None or uuid.UUID(str(row[0])) == order.id:
        return None
    return uuid.UUID(str(row[0]))


def _why_not_written(session: Session, order: DraftOrder) -> ApprovalRefused:
    """Why the upsert matched a row but left it alone (the row is locked, or gone)."""
    row = (
        session.connection().exec_driver_sql(_ORDER_BY_ID_SQL, {"order_id": str(order.id)}).first()
    )
    if row is not None and uuid.UUID(str(row[0])) == order.org_id:
        # Same organisation and not a DRAFT (the WHERE clause saw the row locked,
        # so it cannot have changed since): approved before.
        return ApprovalRefused("already_approved")
    # The id belongs to another organisation. Its number may also be taken in ours:
    # the number is reported first, as the in-memory writer does.
    namesake = _namesake(session, order)
    if namesake is not None:
        return ApprovalRefused("order_number_taken", namesake)
    return ApprovalRefused("id_taken", constraint=DRAFT_ORDER_PKEY)
