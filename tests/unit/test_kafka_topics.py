"""Topic names from a prefix: layout, tiers, and prefix validation."""

from __future__ import annotations

import pytest

from adapters.kafka.errors import TopicNameError
from adapters.kafka.topics import (
    MAX_TOPIC_NAME_LENGTH,
    TopicNames,
    _wanted_partitions,
    validate_topic_name,
)


def test_layout() -> None:
    names = TopicNames("orderflow", retry_tiers=3)
    assert names.requests == "orderflow.push.requests"
    assert names.results == "orderflow.push.results"
    assert names.dlq == "orderflow.push.dlq"
    assert names.retry(1) == "orderflow.push.retry.1"
    assert names.retry_topics == (
        "orderflow.push.retry.1",
        "orderflow.push.retry.2",
        "orderflow.push.retry.3",
    )
    assert names.consumed == ("orderflow.push.requests", *names.retry_topics)
    assert names.all() == (
        "orderflow.push.requests",
        *names.retry_topics,
        "orderflow.push.results",
        "orderflow.push.dlq",
    )
    assert len(set(names.all())) == len(names.all())


def test_zero_tiers_means_no_retry_topics() -> None:
    names = TopicNames("of", retry_tiers=0)
    assert names.retry_topics == ()
    assert names.all() == ("of.push.requests", "of.push.results", "of.push.dlq")
    with pytest.raises(ValueError, match="between 1 and 0"):
        names.retry(1)


@pytest.mark.parametrize("tier", [0, 4, -1, True])
def test_retry_tier_out_of_range(tier: int) -> None:
    with pytest.raises(ValueError, match="Retry tier"):
        TopicNames("of", 3).retry(tier)


def test_retry_tier_of() -> None:
    names = TopicNames("a.b", 12)
    assert names.retry_tier_of("a.b.push.retry.1") == 1
    assert names.retry_tier_of("a.b.push.retry.12") == 12
    for other in (
        "a.b.push.retry.13",
        "a.b.push.retry.0",
        "a.b.push.retry.01",
        "a.b.push.retry.x",
        "a.b.push.retry.",
        "a.b.push.requests",
        "x.push.retry.1",
    ):
        assert names.retry_tier_of(other) is None, other


@pytest.mark.parametrize("prefix", ["orderflow", "of-test_1", "a", "env.prod.orderflow", "A-Z_0.9"])
def test_valid_prefixes(prefix: str) -> None:
    for topic in TopicNames(prefix, 3).all():
        assert validate_topic_name(topic) == topic


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("", "empty"),
        ("has space", "may only contain"),
        ("slash/no", "may only contain"),
        ("ümlaut", "may only contain"),
        ("colon:x", "may only contain"),
        ("__internal", "reserved"),
        (".leading", "start or end"),
        ("trailing.", "start or end"),
    ],
)
def test_invalid_prefixes(prefix: str, message: str) -> None:
    with pytest.raises(TopicNameError, match=message):
        TopicNames(prefix, 3)


def test_prefix_length_is_checked_against_the_longest_name() -> None:
    # ".push.requests" (14 characters) is the longest suffix; ".push.retry.32" ties it.
    fits = "p" * (MAX_TOPIC_NAME_LENGTH - len(".push.requests"))
    names = TopicNames(fits, 32)
    assert max(len(t) for t in names.all()) == MAX_TOPIC_NAME_LENGTH
    with pytest.raises(TopicNameError, match="too long"):
        TopicNames(fits + "p", 0)


@pytest.mark.parametrize("tiers", [-1, 33, 1.5, True])
def test_retry_tiers_validated(tiers: object) -> None:
    with pytest.raises(TopicNameError, match="retry_tiers"):
        TopicNames("of", tiers)  # type: ignore[arg-type]


def test_topic_names_are_values() -> None:
    assert TopicNames("of", 2) == TopicNames("of", 2)
    assert hash(TopicNames("of", 2)) == hash(TopicNames("of", 2))
    with pytest.raises(AttributeError):
        TopicNames("of", 2).prefix = "x"  # type: ignore[misc]


@pytest.mark.parametrize("name", ["", ".", "..", "a b", "x" * 250])
def test_validate_topic_name_rejects(name: str) -> None:
    with pytest.raises(TopicNameError):
        validate_topic_name(name)


def test_wanted_partitions() -> None:
    assert _wanted_partitions(["a", "b"], 6) == {"a": 6, "b": 6}
    assert _wanted_partitions(["a"], {"a": 2, "z": 9}) == {"a": 2}
    with pytest.raises(ValueError, match="No partition count"):
        _wanted_partitions(["a", "b"], {"a": 2})
    with pytest.raises(ValueError, match="at least 1"):
        _wanted_partitions(["a"], 0)
