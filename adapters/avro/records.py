"""Build and read the Avro records of the pipeline from and into domain values.

- ``order_to_avro`` / ``order_from_avro``: a domain ``DraftOrder`` and the
  Avro ``DraftOrder`` record. Decimals travel as their exact text
  (``str(Decimal)``), ``extra`` values as JSON texts; the round trip is exact.
- ``push_requested_record`` / ``push_requested_from_outbox``: the
  ``PushRequested`` record of an order, or of the outbox event that
  ``producer.approval.build_push_requested`` wrote.
- ``draft_order_from_push_requested``: the consumer's way back to a domain
  order; content that breaks the contract raises ``InvalidMessage``.
- ``push_result_record``: the ``PushResult`` answering a decoded request.
- ``jsonable``: a record with UUIDs and datetimes turned into text, for an
  outbox payload (``encode`` accepts that form back).
- ``encode_outbox_event``: the relay's one call, whatever the event type.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.avro.codec import (
    PUSH_REQUESTED,
    AvroCodec,
    InvalidMessage,
    UnknownSchema,
    default_codec,
)
from domain.idempotency import parse_idempotency_key
from domain.model import DraftOrder, DraftOrderStatus, OrderLine, PushStatus, storage_problem
from domain.records import EVENT_PUSH_REQUESTED, OutboxEvent, order_from_json

#: The decimal text syntax of quantities and prices (Python ``str(Decimal)``,
#: Java ``BigDecimal.toString``); no NaN, infinity, blanks or underscores.
DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: Statuses a ``PushResult`` may carry (final outcomes only).
RESULT_STATUSES = frozenset({PushStatus.SUCCESS.value, PushStatus.FAILED.value})


def decimal_to_text(value: Decimal) -> str:
    """Return the exact text of a finite decimal; ``ValueError`` for NaN or infinity."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"Not a finite decimal: {value!r}")
    return str(value)


def decimal_from_text(text: str) -> Decimal:
    """Return the decimal spelled by ``text``; ``ValueError`` unless it matches ``DECIMAL_TEXT``."""
    if not isinstance(text, str) or not DECIMAL_TEXT.fullmatch(text):
        raise ValueError(f"Not a decimal number: {text!r}")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        raise ValueError(f"Not a decimal number: {text!r}") from None


def _json_text(key: str, value: Any) -> str:
    try:
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra[{key!r}] is not a JSON value: {exc}") from None


def order_to_avro(order: DraftOrder) -> dict[str, Any]:
    """Return the Avro ``DraftOrder`` record of ``order`` (its id and org travel beside it).

    Raises ``ValueError`` for a non-finite decimal or an ``extra`` value that
    is not JSON (str keys; str, int, float, bool, None, lists and objects).
    """
    for key in order.extra:
        if not isinstance(key, str):
            raise ValueError(f"extra keys must be strings, got {key!r}")
    return {
        "order_number": order.order_number,
        "customer_code": order.customer_code,
        "currency": order.currency,
        "notes": order.notes,
        "lines": [
            {
                "line_no": line.line_no,
                "product_code": line.product_code,
                "description": line.description,
                "quantity": decimal_to_text(line.quantity),
                "unit_price": decimal_to_text(line.unit_price),
                "unit": line.unit,
            }
            for line in order.lines
        ],
        "extra": {key: _json_text(key, value) for key, value in order.extra.items()},
    }


def order_from_avro(
    record: Mapping[str, Any],
    *,
    order_id: uuid.UUID,
    org_id: uuid.UUID,
    status: DraftOrderStatus = DraftOrderStatus.APPROVED,
) -> DraftOrder:
    """Return the domain ``DraftOrder`` of an Avro ``DraftOrder`` record.

    Raises ``InvalidMessage`` if a quantity or price is not a decimal number
    or an ``extra`` value is not a JSON text.
    """
    lines = []
    for index, line in enumerate(record["lines"]):
        try:
            quantity = decimal_from_text(line["quantity"])
            unit_price = decimal_from_text(line["unit_price"])
        except ValueError as exc:
            raise InvalidMessage(f"order.lines[{index}]: {exc}") from None
        lines.append(
            OrderLine(
                line_no=line["line_no"],
                product_code=line["product_code"],
                quantity=quantity,
                unit_price=unit_price,
                description=line["description"],
                unit=line["unit"],
            )
        )
    extra: dict[str, Any] = {}
    for key, text in record["extra"].items():
        try:
            extra[key] = json.loads(text)
        except ValueError:
            raise InvalidMessage(f"order.extra[{key!r}] is not a JSON text: {text!r}") from None
    return DraftOrder(
        id=order_id,
        org_id=org_id,
        order_number=record["order_number"],
        customer_code=record["customer_code"],
        currency=record["currency"],
        lines=tuple(lines),
        status=status,
        notes=record["notes"],
        extra=extra,
    )


def push_requested_record(
    order: DraftOrder,
    *,
    event_id: uuid.UUID,
    idempotency_key: str,
    attempt: int,
    occurred_at: datetime,
    approved_at: datetime,
) -> dict[str, Any]:
    """Return the ``PushRequested`` record asking to push ``order`` (ready for ``encode``)."""
    return {
        "event_id": event_id,
        "org_id": order.org_id,
        "draft_order_id": order.id,
        "idempotency_key": idempotency_key,
        "attempt": attempt,
        "occurred_at": occurred_at,
        "approved_at": approved_at,
        "order": order_to_avro(order),
    }


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"Timestamp without a timezone: {text!r}")
    return value


def push_requested_from_outbox(event: OutboxEvent) -> dict[str, Any]:
    """Return the ``PushRequested`` record of an outbox event from ``build_push_requested``.

    The payload is ``order_to_json(order)`` plus ``approved_at``; the
    idempotency key and attempt come from the event's headers.
    """
    if event.event_type != EVENT_PUSH_REQUESTED:
        raise ValueError(f"Not a {EVENT_PUSH_REQUESTED} event: {event.event_type!r}")
    order = order_from_json(event.payload)
    if order.id != event.aggregate_id or order.org_id != event.org_id:
        raise ValueError(f"Outbox event {event.event_id} carries another order than it names")
    approved = event.payload.get("approved_at")
    return push_requested_record(
        order,
        event_id=event.event_id,
        idempotency_key=event.headers["idempotency_key"],
        attempt=int(event.headers.get("attempt", "0")),
        occurred_at=event.created_at,
        approved_at=_parse_time(approved) if isinstance(approved, str) else event.created_at,
    )


def draft_order_from_push_requested(record: Mapping[str, Any]) -> DraftOrder:
    """Return the APPROVED domain ``DraftOrder`` a decoded ``PushRequested`` asks to push.

    Raises ``InvalidMessage`` if the content breaks the contract or cannot be stored
    (``domain.model.storage_problem``).
    """
    if record["attempt"] < 0:
        raise InvalidMessage(f"attempt is {record['attempt']}, must be >= 0")
    order = order_from_avro(
        record["order"], order_id=record["draft_order_id"], org_id=record["org_id"]
    )
    problem = storage_problem(order)
    if problem is not None:
        # Not storable in the push log: a request that can never be recorded must go
        # to the DLQ, not fail (and be retried) for ever in front of its partition.
        raise InvalidMessage(f"order.{problem}")
    return order


def push_round_of_request(record: Mapping[str, Any]) -> int:
    """The push round a decoded ``PushRequested`` belongs to, read from its ``idempotency_key``.

    A key of round ``r >= 1`` (``erp-push:<org>:<order>:r<r>:<attempt>``) must name
    the record's own organisation, order and attempt, else ``InvalidMessage``.
    Any other key is round 0: before push rounds existed the worker derived the
    key from (org, order, attempt) and never read the field, so upstream keys of
    another form keep working as they did.
    """
    try:
        parsed = parse_idempotency_key(record["idempotency_key"])
    except ValueError:
        return 0
    if parsed.push_round == 0:
        return 0
    if (parsed.org_id, parsed.draft_order_id, parsed.attempt) != (
        record["org_id"],
        record["draft_order_id"],
        record["attempt"],
    ):
        raise InvalidMessage(
            f"idempotency_key of push round {parsed.push_round} does not name this "
            "record's org_id, draft_order_id and attempt"
        )
    return parsed.push_round


def push_result_record(
    request: Mapping[str, Any],
    *,
    event_id: uuid.UUID,
    status: PushStatus | str,
    completed_at: datetime,
    occurred_at: datetime | None = None,
    idempotency_key: str | None = None,
    attempt: int | None = None,
    retry_count: int | None = None,
    connector_type: str | None = None,
    storage_key: str | None = None,
    erp_reference: str | None = None,
    error_class: str | None = None,
    error_message: str | None = None,
    latency_ms: int | None = None,
) -> dict[str, Any]:
    """Return the ``PushResult`` answering the decoded ``PushRequested`` ``request``.

    Ids, approval time, idempotency key and attempt are copied from the
    request unless given; ``retry_count`` defaults to the attempt and
    ``occurred_at`` to ``completed_at``. ``status`` must be SUCCESS or
    FAILED (``ValueError`` otherwise). ``error_message`` is cut to the
    schema's bound when encoded.
    """
    status_text = str(status.value if isinstance(status, PushStatus) else status)
    if status_text not in RESULT_STATUSES:
        raise ValueError(f"A PushResult is SUCCESS or FAILED, not {status_text!r}")
    number = request["attempt"] if attempt is None else attempt
    return {
        "event_id": event_id,
        "request_event_id": request["event_id"],
        "org_id": request["org_id"],
        "draft_order_id": request["draft_order_id"],
        "idempotency_key": idempotency_key or request["idempotency_key"],
        "status": status_text,
        "attempt": number,
        "retry_count": number if retry_count is None else retry_count,
        "connector_type": connector_type,
        "storage_key": storage_key,
        "erp_reference": erp_reference,
        "error_class": error_class,
        "error_message": error_message,
        "latency_ms": latency_ms,
        "approved_at": request["approved_at"],
        "completed_at": completed_at,
        "occurred_at": completed_at if occurred_at is None else occurred_at,
    }


def jsonable(value: Any) -> Any:
    """Return ``value`` with UUIDs, datetimes and decimals as text (for a JSON outbox payload).

    Datetimes become ISO-8601 UTC text with microseconds and ``Z``;
    :meth:`AvroCodec.encode` accepts both forms.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"Naive datetime {value!r}: give a timezone (UTC)")
        text = value.astimezone(UTC).isoformat(timespec="microseconds")
        return text.replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return decimal_to_text(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def encode_outbox_event(event: OutboxEvent, codec: AvroCodec | None = None) -> bytes:
    """Return the framed Avro value the relay publishes for an outbox ``event``.

    A ``PushRequested`` event is converted from its order payload; any other
    event type must name a known schema, its payload being the record (in
    the form :func:`jsonable` gives). Raises ``UnknownSchema`` for an event
    type with no schema and ``InvalidRecord`` / ``ValueError`` for a payload
    that does not fit.
    """
    codec = codec or default_codec()
    if event.event_type == PUSH_REQUESTED:
        return codec.encode(PUSH_REQUESTED, push_requested_from_outbox(event))
    if event.event_type not in codec.schema_names:
        raise UnknownSchema(f"No Avro schema for outbox event type {event.event_type!r}")
    return codec.encode(event.event_type, event.payload)
