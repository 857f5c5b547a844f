"""Persistent records of the push pipeline, as the domain sees them.

These are plain immutable values: stores (``domain.repositories``) take and
return them, so neither the producer nor the consumer ever touches an ORM
object. The JSON conversion of a ``DraftOrder`` lives here too, because the
outbox event, the push log's ``request_json`` and the consumer that decodes
an event must all agree on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from domain.events import AGGREGATE_DRAFT_ORDER, EVENT_HEADER_NAMES, EVENT_PUSH_REQUESTED
from domain.ids import new_uuid4
from domain.model import (
    ConnectionStatus,
    DraftOrder,
    DraftOrderStatus,
    OrderLine,
    PushStatus,
)

__all__ = ["AGGREGATE_DRAFT_ORDER", "EVENT_HEADER_NAMES", "EVENT_PUSH_REQUESTED"]

_FINAL_PUSH_STATUSES = frozenset({PushStatus.SUCCESS, PushStatus.FAILED})


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime (the default clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ConnectionRecord:
    """One ``erp_connection`` row: an organisation's encrypted connector config.

    ``config_encrypted`` is an AES-GCM blob bound to (org_id, connector_type);
    the plaintext config never lives in a record.
    """

    id: uuid.UUID
    org_id: uuid.UUID
    connector_type: str
    config_encrypted: bytes = field(repr=False)
    status: ConnectionStatus = ConnectionStatus.ACTIVE
    last_test_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def new(
        cls,
        org_id: uuid.UUID,
        connector_type: str,
        config_encrypted: bytes,
        *,
        now: datetime | None = None,
    ) -> ConnectionRecord:
        """Return a new ACTIVE connection record with a fresh id."""
        at = now or utc_now()
        return cls(
            id=uuid.uuid4(),
            org_id=org_id,
            connector_type=connector_type,
            config_encrypted=config_encrypted,
            status=ConnectionStatus.ACTIVE,
            created_at=at,
            updated_at=at,
        )

    @property
    def is_active(self) -> bool:
        """True if this is the organisation's active connection."""
        return self.status is ConnectionStatus.ACTIVE


@dataclass(frozen=True)
class PushLogEntry:
    """One ``erp_push_log`` row: one attempt to push one draft order.

    Each attempt ``n`` has its own row and idempotency key
    (``generate_idempotency_key(org, order, n)``). ``PENDING`` means a worker
    has claimed the attempt and holds it until ``lease_expires_at``;
    ``RETRYING`` means the attempt failed transiently and attempt ``n + 1`` is
    due; ``SUCCESS`` and ``FAILED`` end the push. ``request_json`` holds the
    order payload, never the connector config.

    ``push_round`` is the push round the attempt belongs to (0: the first push;
    ``r >= 1``: the r-th push again after a FAILED round, see
    ``domain.idempotency``). ``previous_idempotency_key`` links attempt 0 of a
    round ``r >= 1`` to the final (FAILED) key of the round before it; it is
    ``None`` on every other row. A PENDING row without a lease is a push again
    that was requested and waits for a worker to take it.
    """

    id: uuid.UUID
    org_id: uuid.UUID
    draft_order_id: uuid.UUID
    idempotency_key: str
    status: PushStatus
    connector_type: str | None = None
    request_json: dict[str, Any] | None = None
    response_json: dict[str, Any] | None = None
    error_message: str | None = None
    retry_count: int = 0
    attempt: int = 0
    latency_ms: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    lease_expires_at: datetime | None = None
    push_round: int = 0
    previous_idempotency_key: str | None = None

    @classmethod
    def pending(
        cls,
        *,
        org_id: uuid.UUID,
        draft_order_id: uuid.UUID,
        idempotency_key: str,
        attempt: int,
        now: datetime,
        lease_expires_at: datetime | None,
        connector_type: str | None = None,
        request_json: dict[str, Any] | None = None,
        push_round: int = 0,
        previous_idempotency_key: str | None = None,
    ) -> PushLogEntry:
        """Return a new PENDING claim of attempt ``attempt`` (``retry_count == attempt``).

        ``lease_expires_at`` ``None`` makes a row nobody holds yet (a requested
        push again): the first worker to see it takes it over.
        """
        return cls(
            id=new_uuid4(),
            org_id=org_id,
            draft_order_id=draft_order_id,
            idempotency_key=idempotency_key,
            status=PushStatus.PENDING,
            connector_type=connector_type,
            request_json=request_json,
            retry_count=attempt,
            attempt=attempt,
            created_at=now,
            updated_at=now,
            lease_expires_at=lease_expires_at,
            push_round=push_round,
            previous_idempotency_key=previous_idempotency_key,
        )

    @property
    def is_final(self) -> bool:
        """True if the push ended here (SUCCESS or FAILED)."""
        return self.status in _FINAL_PUSH_STATUSES

    def lease_expired(self, now: datetime) -> bool:
        """Return True if this is a PENDING claim whose holder is presumed dead."""
        return self.status is PushStatus.PENDING and (
            self.lease_expires_at is None or self.lease_expires_at <= now
        )

    def retry_due_at(self, retry_delay_seconds: float) -> datetime | None:
        """When the next attempt after this RETRYING row is due, else None."""
        if self.status is not PushStatus.RETRYING or self.updated_at is None:
            return None
        return self.updated_at + timedelta(seconds=retry_delay_seconds)


@dataclass(frozen=True)
class OutboxEvent:
    """One ``outbox_event`` row: an event written in the same transaction as its cause.

    ``id`` is the publish-order sequence number the store assigns (``None``
    until stored); the relay removes the row once Kafka has it.
    ``headers`` are strings (they become Kafka headers). ``value`` is the
    Kafka value when it was encoded as the event was written (``None``: the
    relay encodes ``payload``).
    """

    event_id: uuid.UUID
    aggregate_type: str
    aggregate_id: uuid.UUID
    org_id: uuid.UUID
    event_type: str
    payload: dict[str, Any]
    headers: dict[str, str]
    created_at: datetime
    id: int | None = None
    value: bytes | None = field(default=None, repr=False)

    def stored_as(self, sequence_id: int, value: bytes | None = None) -> OutboxEvent:
        """Return a copy carrying the sequence id (and encoded value) the store assigned."""
        return replace(self, id=sequence_id, value=value if value is not None else self.value)


# -- DraftOrder <-> JSON ------------------------------------------------------


def order_line_to_json(line: OrderLine) -> dict[str, Any]:
    """Return ``line`` as a JSON-ready dict; decimals become strings (no float rounding)."""
    return {
        "line_no": line.line_no,
        "product_code": line.product_code,
        "quantity": str(line.quantity),
        "unit_price": str(line.unit_price),
        "description": line.description,
        "unit": line.unit,
    }


def order_line_from_json(data: Mapping[str, Any]) -> OrderLine:
    """Inverse of ``order_line_to_json``."""
    return OrderLine(
        line_no=int(data["line_no"]),
        product_code=str(data["product_code"]),
        quantity=Decimal(str(data["quantity"])),
        unit_price=Decimal(str(data["unit_price"])),
        description=str(data.get("description", "")),
        unit=str(data.get("unit", "unit")),
    )


def order_to_json(order: DraftOrder) -> dict[str, Any]:
    """Return ``order`` as a JSON-ready dict (ids and decimals as strings)."""
    return {
        "id": str(order.id),
        "org_id": str(order.org_id),
        "order_number": order.order_number,
        "customer_code": order.customer_code,
        "currency": order.currency,
        "status": order.status.value,
        "notes": order.notes,
        "lines": [order_line_to_json(line) for line in order.lines],
        "total": str(order.total),
        "extra": dict(order.extra),
    }


def order_from_json(data: Mapping[str, Any]) -> DraftOrder:
    """Inverse of ``order_to_json`` (``total`` is derived, so it is ignored)."""
    return DraftOrder(
        id=uuid.UUID(str(data["id"])),
        org_id=uuid.UUID(str(data["org_id"])),
        order_number=str(data["order_number"]),
        customer_code=str(data["customer_code"]),
        currency=str(data.get("currency", "EUR")),
        lines=tuple(order_line_from_json(line) for line in data.get("lines", ())),
        status=DraftOrderStatus(data.get("status", DraftOrderStatus.DRAFT.value)),
        notes=str(data.get("notes", "")),
        extra=dict(data.get("extra") or {}),
    )
