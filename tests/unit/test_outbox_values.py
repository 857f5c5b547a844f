"""One encoder of outbox values, by route; topic names by route role."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from adapters.avro.outbox_values import outbox_value_encoder
from adapters.kafka.topics import TopicNames
from domain.events import (
    EVENT_PUSH_DEAD_LETTERED,
    EVENT_PUSH_REQUESTED,
    EVENT_PUSH_RESULT,
    EVENT_TYPES,
    dead_letter_payload,
    retry_route,
)
from domain.records import OutboxEvent
from entrypoints.relay_wiring import relay_routes


def _event(event_type: str, payload: dict[str, object]) -> OutboxEvent:
    return OutboxEvent(
        event_id=uuid.uuid4(),
        aggregate_type="DraftOrder",
        aggregate_id=uuid.uuid4(),
        org_id=uuid.uuid4(),
        event_type=event_type,
        payload=payload,
        headers={},
        created_at=datetime.now(UTC),
    )


def test_a_dead_letter_is_the_failed_message_unchanged() -> None:
    original = b"\x00\x01 not avro at all \xff"
    encode = outbox_value_encoder()
    assert encode(_event(EVENT_PUSH_DEAD_LETTERED, dead_letter_payload(original))) == original
    assert base64.b64decode(dead_letter_payload(None)["value_base64"]) == b""


def test_an_event_type_without_a_route_has_no_value() -> None:
    assert outbox_value_encoder()(_event("SomethingElse", {})) is None
    assert outbox_value_encoder()(_event("PushRetry.0", {})) is None


def test_the_relay_routes_every_event_type_to_its_topic() -> None:
    topics = TopicNames("t", retry_tiers=2)
    routes = relay_routes(topics, outbox_value_encoder())
    assert {name: r.topic for name, r in routes.items()} == {
        EVENT_PUSH_REQUESTED: "t.push.requests",
        EVENT_PUSH_RESULT: "t.push.results",
        EVENT_PUSH_DEAD_LETTERED: "t.push.dlq",
        "PushRetry.1": "t.push.retry.1",
        "PushRetry.2": "t.push.retry.2",
    }
    assert set(EVENT_TYPES) <= set(routes)
    assert topics.topic_for(retry_route(2)) == "t.push.retry.2"
    with pytest.raises(ValueError, match="Retry tier must be between 1 and 2"):
        topics.topic_for(retry_route(3))


def test_a_route_refuses_a_row_it_cannot_encode() -> None:
    routes = relay_routes(TopicNames("t", retry_tiers=1), lambda event: None)
    with pytest.raises(ValueError, match="no Kafka value for event type 'PushResult'"):
        routes[EVENT_PUSH_RESULT].encode(_event(EVENT_PUSH_RESULT, {}))
