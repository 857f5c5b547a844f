"""The pipeline's event types, in one table: what each is and which topic role carries it.

Every outbox ``event_type`` the writers produce is listed in :data:`EVENT_TYPES`
(the retry tiers as one family, ``PushRetry.<n>``). Adapters turn a role into a
topic name (``adapters.kafka.topics``) and a value record into bytes (the record
codec); the application only names event types. Add an event type here first.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from typing import Any

#: ``aggregate_type`` of outbox events about draft orders.
AGGREGATE_DRAFT_ORDER = "DraftOrder"

#: ``event_type`` of the event that asks the pipeline to push a draft order.
EVENT_PUSH_REQUESTED = "PushRequested"
#: ``event_type`` of the final outcome of a push (value: ``PushResult``).
EVENT_PUSH_RESULT = "PushResult"
#: Prefix of the ``event_type`` of a retry record for tier ``n``: ``PushRetry.<n>``.
EVENT_PUSH_RETRY_PREFIX = "PushRetry."
#: ``event_type`` of a dead letter (value: the original message's bytes).
EVENT_PUSH_DEAD_LETTERED = "PushDeadLettered"

#: Payload key of a dead letter's original value (base64).
DEAD_LETTER_VALUE = "value_base64"

#: Headers every pipeline message carries (DESIGN.md §3).
EVENT_HEADER_NAMES: tuple[str, ...] = (
    "event_id",
    "event_type",
    "idempotency_key",
    "org_id",
    "attempt",
    "occurred_at",
    "traceparent",
)


class TopicRole(enum.Enum):
    """The part a topic plays in the pipeline (names come from the topic prefix)."""

    REQUESTS = "requests"
    RETRY = "retry"
    RESULTS = "results"
    DLQ = "dlq"


@dataclass(frozen=True)
class EventRoute:
    """Where an event type goes and what its Kafka value is.

    ``record`` names the Avro record of the value (``schemas/``); ``None`` means
    the value is carried through as bytes (a dead letter keeps the failed
    message's value unchanged). ``tier`` is the retry tier (1..n) of a
    :attr:`TopicRole.RETRY` route, else 0.
    """

    event_type: str
    role: TopicRole
    record: str | None
    tier: int = 0


#: Every fixed event type the pipeline writes (the retry family is :func:`retry_route`).
EVENT_TYPES: dict[str, EventRoute] = {
    EVENT_PUSH_REQUESTED: EventRoute(EVENT_PUSH_REQUESTED, TopicRole.REQUESTS, "PushRequested"),
    EVENT_PUSH_RESULT: EventRoute(EVENT_PUSH_RESULT, TopicRole.RESULTS, "PushResult"),
    EVENT_PUSH_DEAD_LETTERED: EventRoute(EVENT_PUSH_DEAD_LETTERED, TopicRole.DLQ, None),
}


def retry_event_type(tier: int) -> str:
    """The outbox ``event_type`` of a record for retry tier ``tier``."""
    if tier < 1:
        raise ValueError(f"Retry tier must be >= 1, got {tier}")
    return f"{EVENT_PUSH_RETRY_PREFIX}{tier}"


def retry_route(tier: int) -> EventRoute:
    """The route of retry tier ``tier``: its value is the request's next ``PushRequested``."""
    return EventRoute(retry_event_type(tier), TopicRole.RETRY, "PushRequested", tier)


def route_of(event_type: str) -> EventRoute | None:
    """The route of ``event_type``, or ``None`` if the pipeline has no such event type."""
    route = EVENT_TYPES.get(event_type)
    if route is not None:
        return route
    if event_type.startswith(EVENT_PUSH_RETRY_PREFIX):
        digits = event_type[len(EVENT_PUSH_RETRY_PREFIX) :]
        # Only the canonical spelling (no sign, no leading zero) names a tier.
        if digits.isdigit() and digits.isascii() and not digits.startswith("0"):
            return retry_route(int(digits))
    return None


def dead_letter_payload(value: bytes | None) -> dict[str, Any]:
    """The outbox payload of a ``PushDeadLettered`` event: the failed message's value."""
    return {DEAD_LETTER_VALUE: base64.b64encode(value or b"").decode("ascii")}
