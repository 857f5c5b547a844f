"""Outbox events the push worker writes, and how the relay publishes them.

Every outcome of a push goes through the outbox, in the same transaction as
the push log update (no dual write to the database and Kafka):

* ``PushResult`` -> ``<prefix>.push.results`` (routed by the relay already);
* ``PushRetry.<n>`` -> retry tier ``<prefix>.push.retry.<n>``: the request's
  next attempt as a ``PushRequested`` record (payload in :func:`jsonable` form);
* ``PushDeadLettered`` -> ``<prefix>.push.dlq``: the failed message's value,
  unchanged (base64 in the payload).

The outbox row's ``event_type`` only routes; the Kafka ``event_type`` header
names the Avro record of the value (``PushRequested`` on tiers and the DLQ).
:func:`outcome_routes` gives the relay its topic and encoder per event type.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from domain.events import (
    DEAD_LETTER_VALUE,
    EVENT_PUSH_DEAD_LETTERED,
    EVENT_PUSH_RETRY_PREFIX,
    retry_event_type,
)
from domain.records import OutboxEvent

if TYPE_CHECKING:
    from adapters.kafka.topics import TopicNames

Encoder = Callable[[OutboxEvent], bytes]


def dead_letter_payload(value: bytes | None) -> dict[str, Any]:
    """The outbox payload carrying a dead letter's original value."""
    return {DEAD_LETTER_VALUE: base64.b64encode(value or b"").decode("ascii")}


def encode_dead_letter(event: OutboxEvent) -> bytes:
    """The Kafka value of a ``PushDeadLettered`` outbox event: the original bytes."""
    return base64.b64decode(event.payload[DEAD_LETTER_VALUE], validate=True)


def encode_retry(event: OutboxEvent) -> bytes:
    """The Kafka value of a ``PushRetry.<n>`` outbox event: its ``PushRequested`` record."""
    from adapters.avro.codec import PUSH_REQUESTED, encode

    return encode(PUSH_REQUESTED, event.payload)


def outcome_encoder(event_type: str) -> Encoder | None:
    """The encoder of a retry-tier or DLQ outbox event type (``None`` for any other)."""
    if event_type == EVENT_PUSH_DEAD_LETTERED:
        return encode_dead_letter
    if event_type.startswith(EVENT_PUSH_RETRY_PREFIX):
        return encode_retry
    return None


def outcome_routes(topics: TopicNames) -> dict[str, tuple[str, Encoder]]:
    """``event_type -> (topic, encoder)`` for the retry tiers and the DLQ (for the relay).

    ``PushResult`` is not listed: the relay routes it with its default encoder.
    """
    routes: dict[str, tuple[str, Encoder]] = {
        retry_event_type(n): (topics.retry(n), encode_retry)
        for n in range(1, topics.retry_tiers + 1)
    }
    routes[EVENT_PUSH_DEAD_LETTERED] = (topics.dlq, encode_dead_letter)
    return routes
