"""Approving a draft order: the write side of the transactional outbox.

``approve_draft_order`` marks the order APPROVED and writes a
``PushRequested`` event to ``outbox_event`` in ONE transaction: either both
are committed or neither is, so an approved order is never left without its
push request and no event announces an order that was not approved. The
relay publishes the event to Kafka afterwards.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from domain.errors import OrderFlowError
from domain.idempotency import generate_idempotency_key
from domain.model import DraftOrder, DraftOrderStatus, storage_problem
from domain.order_input import to_draft_order
from domain.records import (
    AGGREGATE_DRAFT_ORDER,
    EVENT_PUSH_REQUESTED,
    OutboxEvent,
    order_to_json,
    utc_now,
)
from domain.repositories import ApprovalRefused, DuplicateKeyError, UnitOfWork

#: Largest ``PushRequested`` payload (UTF-8 JSON) the pipeline accepts. Kafka refuses
#: records over ~1 MB by default (librdkafka ``message.max.bytes`` = 1 000 000), and a
#: refused event would stay in the outbox for ever; the JSON payload is larger than its
#: Avro encoding, so this bound leaves room for the key and the headers.
MAX_EVENT_PAYLOAD_BYTES = 900_000

_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


class OrderAlreadyApproved(OrderFlowError):  # noqa: N818 - public name of the contract
    """The draft order was approved before; approving again writes nothing."""

    def __init__(self, org_id: uuid.UUID, order_id: uuid.UUID) -> None:
        super().__init__(f"Draft order {order_id} of organisation {org_id} is already approved")
        self.org_id = org_id
        self.order_id = order_id


class OrderTooLarge(OrderFlowError, ValueError):  # noqa: N818 - public name of the contract
    """The draft order is too large to travel through the push pipeline (nothing written)."""

    def __init__(self, order_id: uuid.UUID, size: int, limit: int) -> None:
        super().__init__(
            f"Draft order {order_id} is {size} bytes as a push request, over the "
            f"{limit} byte limit of the push pipeline"
        )
        self.order_id = order_id
        self.size = size
        self.limit = limit


class UnstorableOrder(OrderFlowError, ValueError):  # noqa: N818 - public name of the contract
    """The draft order holds something PostgreSQL cannot store (nothing written)."""

    def __init__(self, order_id: uuid.UUID, problem: str) -> None:
        super().__init__(f"Draft order {order_id} cannot be approved: {problem}")
        self.order_id = order_id
        self.problem = problem


def new_traceparent() -> str:
    """Return a new W3C ``traceparent`` (version 00, random ids, sampled)."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def build_push_requested(
    order: DraftOrder,
    *,
    occurred_at: datetime,
    traceparent: str | None = None,
    push_round: int = 0,
) -> OutboxEvent:
    """Return the ``PushRequested`` outbox event of an approved ``order``.

    The payload is the order as JSON (decimals as strings) plus
    ``approved_at``; the headers are the pipeline's standard set, attempt 0
    of push round ``push_round`` (0: the approval; r >= 1: a push again,
    whose idempotency key carries the round, see ``domain.idempotency``).
    """
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    if traceparent is None:
        traceparent = new_traceparent()
    elif not _TRACEPARENT.match(traceparent):
        raise ValueError(f"Invalid W3C traceparent: {traceparent!r}")
    event_id = uuid.uuid4()
    occurred = occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    headers = {
        "event_id": str(event_id),
        "event_type": EVENT_PUSH_REQUESTED,
        "idempotency_key": generate_idempotency_key(
            order.org_id, order.id, 0, push_round=push_round
        ),
        "org_id": str(order.org_id),
        "attempt": "0",
        "occurred_at": occurred,
        "traceparent": traceparent,
    }
    payload = order_to_json(order)
    payload["approved_at"] = occurred
    size = len(
        json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    )
    if size > MAX_EVENT_PAYLOAD_BYTES:
        raise OrderTooLarge(order.id, size, MAX_EVENT_PAYLOAD_BYTES)
    return OutboxEvent(
        event_id=event_id,
        aggregate_type=AGGREGATE_DRAFT_ORDER,
        aggregate_id=order.id,
        org_id=order.org_id,
        event_type=EVENT_PUSH_REQUESTED,
        payload=payload,
        headers=headers,
        created_at=occurred_at,
    )


def approve_draft_order(
    uow: UnitOfWork,
    org_id: uuid.UUID | str,
    order: object,
    *,
    clock: Callable[[], datetime] = utc_now,
    traceparent: str | None = None,
) -> OutboxEvent:
    """Approve ``order`` for ``org_id`` and request its push, in one transaction.

    ``order`` is a ``DraftOrder``, the ``DraftOrderRow`` ORM row, a mapping
    (``order_to_json``'s shape) or any object with the order's attributes,
    converted by ``domain.order_input.to_draft_order`` (without an ``org_id``
    of its own it is ``org_id``'s). A new order is inserted, an existing DRAFT
    is overwritten with ``order``'s fields; both become APPROVED. Returns the
    stored outbox event. ``traceparent`` continues the caller's trace (a new
    one is started if omitted).

    Raises ``InvalidDraftOrder`` (a ``ValueError``) listing every problem if
    ``order`` is not a valid draft order or belongs to another organisation,
    ``OrderTooLarge`` (a ``ValueError``) if its push request would exceed
    ``MAX_EVENT_PAYLOAD_BYTES``, ``UnstorableOrder`` (a ``ValueError``) if a text
    field holds U+0000 or the order number is too long,
    ``OrderAlreadyApproved`` if it was approved before, and
    ``DuplicateKeyError`` if its order number is used by another order (or a
    concurrent approval inserted it first); nothing is written in any of
    these cases.

    The write is the unit of work's ``approvals`` port: one statement in the
    SQL adapter (``adapters.postgres.approval_sql``), the fake's tables in
    tests; both refuse the same cases, mapped to the same errors here.
    """
    draft = to_draft_order(order, org_id=org_id)
    org = draft.org_id
    problem = storage_problem(draft)
    if problem is not None:
        raise UnstorableOrder(draft.id, problem)
    now = clock()
    approved = replace(draft, status=DraftOrderStatus.APPROVED)
    # Built before the transaction: an order the pipeline cannot carry writes nothing.
    event = build_push_requested(approved, occurred_at=now, traceparent=traceparent)
    with uow:
        written = uow.approvals.write(approved, event, now=now)
        if isinstance(written, ApprovalRefused):
            raise _refusal(written, org, approved)
        uow.commit()
    return written


def _refusal(refused: ApprovalRefused, org: uuid.UUID, approved: DraftOrder) -> OrderFlowError:
    """The contract's error for an approval the writer refused."""
    if refused.reason == "already_approved":
        return OrderAlreadyApproved(org, approved.id)
    if refused.reason == "order_number_taken":
        if refused.namesake_id is not None:
            return _number_taken(org, approved.order_number, refused.namesake_id)
        # Lost a race to a concurrent approval whose row is gone again.
        return DuplicateKeyError(
            f"Order number {approved.order_number!r} is already used in organisation {org}",
            constraint=refused.constraint,
        )
    return DuplicateKeyError(
        f"Draft order {approved.id} already exists", constraint=refused.constraint
    )


def _number_taken(org: uuid.UUID, order_number: str, namesake: uuid.UUID) -> DuplicateKeyError:
    return DuplicateKeyError(
        f"Order number {order_number!r} is already used by draft order "
        f"{namesake} in organisation {org}"
    )
