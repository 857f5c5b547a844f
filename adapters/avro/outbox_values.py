"""The Kafka value of an outbox event, by its route in ``domain.events``: ONE encoder.

Writers store the value with the event (the unit of work's ``outbox_encoder``),
so the relay only moves bytes; the relay gets this same encoder for rows stored
before values were encoded at write time (migration 0002). Per route:

* ``PushRequested`` -> the order payload as a ``PushRequested`` record;
* ``PushResult`` -> the payload as a ``PushResult`` record;
* ``PushRetry.<n>`` -> the request's next attempt: its payload is a
  ``PushRequested`` record (in ``jsonable`` form);
* ``PushDeadLettered`` -> the failed message's value, unchanged (base64 in the
  payload).

An event type with no route encodes to ``None`` (the relay refuses it, logged).
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from adapters.avro.codec import PUSH_REQUESTED, AvroCodec, default_codec
from adapters.avro.records import encode_outbox_event
from domain.events import DEAD_LETTER_VALUE, TopicRole, route_of
from domain.records import OutboxEvent

#: Encodes an outbox event's Kafka value (``None``: the event type has no route).
OutboxValueEncoder = Callable[[OutboxEvent], bytes | None]


def dead_letter_value(event: OutboxEvent) -> bytes:
    """The Kafka value of a ``PushDeadLettered`` outbox event: the original bytes."""
    return base64.b64decode(event.payload[DEAD_LETTER_VALUE], validate=True)


def outbox_value_encoder(codec: AvroCodec | None = None) -> OutboxValueEncoder:
    """The encoder of every routed event type (``codec``: default the validating one).

    A benchmark or the push worker may pass ``AvroCodec.from_schemas(validate=False)``
    for records built in code from typed values (same bytes, less CPU).
    """
    # Resolved now, not per event: the codec is built in the thread that builds the
    # unit of work, never first from two threads at once.
    chosen = codec or default_codec()

    def encode(event: OutboxEvent) -> bytes | None:
        route = route_of(event.event_type)
        if route is None:
            return None
        if route.record is None:
            return dead_letter_value(event)
        if route.role is TopicRole.RETRY:
            return chosen.encode(PUSH_REQUESTED, event.payload)
        return encode_outbox_event(event, chosen)

    return encode
