"""The one table of event types: every type the writers produce has a topic role."""

from __future__ import annotations

import pytest

from domain.events import (
    EVENT_PUSH_DEAD_LETTERED,
    EVENT_PUSH_REQUESTED,
    EVENT_PUSH_RESULT,
    EVENT_TYPES,
    TopicRole,
    retry_event_type,
    retry_route,
    route_of,
)


def test_fixed_event_types_have_their_roles_and_records() -> None:
    assert route_of(EVENT_PUSH_REQUESTED) == EVENT_TYPES[EVENT_PUSH_REQUESTED]
    assert route_of(EVENT_PUSH_REQUESTED).role is TopicRole.REQUESTS  # type: ignore[union-attr]
    assert route_of(EVENT_PUSH_RESULT).role is TopicRole.RESULTS  # type: ignore[union-attr]
    assert route_of(EVENT_PUSH_RESULT).record == "PushResult"  # type: ignore[union-attr]
    dead = route_of(EVENT_PUSH_DEAD_LETTERED)
    assert dead is not None and dead.role is TopicRole.DLQ and dead.record is None


@pytest.mark.parametrize("tier", [1, 2, 3, 17])
def test_retry_tiers_route_to_their_tier_with_a_push_requested_value(tier: int) -> None:
    route = route_of(retry_event_type(tier))
    assert route == retry_route(tier)
    assert route is not None and route.role is TopicRole.RETRY and route.tier == tier
    assert route.record == "PushRequested"


@pytest.mark.parametrize(
    "event_type",
    ["PushRetry.0", "PushRetry.01", "PushRetry.-1", "PushRetry.", "PushRetry.x", "Other"],
)
def test_unknown_event_types_have_no_route(event_type: str) -> None:
    assert route_of(event_type) is None


def test_a_tier_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="Retry tier must be >= 1"):
        retry_event_type(0)
