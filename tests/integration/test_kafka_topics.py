"""ensure_topics against the real broker: creates, is idempotent, refuses a smaller layout."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from adapters.kafka.config import admin_config
from adapters.kafka.errors import TopicPartitionsError, TopicSetupError
from adapters.kafka.topics import EnsureTopicsResult, TopicNames, ensure_topics


@pytest.fixture
def admin(kafka_bootstrap_servers: str) -> AdminClient:
    return AdminClient(admin_config(kafka_bootstrap_servers))


@pytest.fixture
def names(admin: AdminClient) -> Iterator[TopicNames]:
    """A fresh prefix per test; its topics are deleted afterwards."""
    names = TopicNames(f"it-topics-{uuid.uuid4().hex[:12]}", retry_tiers=3)
    yield names
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in names.all() if t in existing]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=10).values():
            future.result()


def partition_counts(admin: AdminClient, topics: tuple[str, ...]) -> dict[str, int]:
    metadata = admin.list_topics(timeout=10)
    return {t: len(metadata.topics[t].partitions) for t in topics if t in metadata.topics}


def test_creates_all_topics_with_the_partitions_asked(
    admin: AdminClient, names: TopicNames
) -> None:
    result = ensure_topics(admin, names, partitions=4, timeout=15)
    assert result.created == names.all()
    assert result.existing == ()
    assert partition_counts(admin, names.all()) == dict.fromkeys(names.all(), 4)
    assert dict(result.partitions) == dict.fromkeys(names.all(), 4)


def test_is_idempotent(kafka_bootstrap_servers: str, admin: AdminClient, names: TopicNames) -> None:
    ensure_topics(kafka_bootstrap_servers, names, 3, timeout=15)
    again = ensure_topics(kafka_bootstrap_servers, names, 3, timeout=15)
    assert again.created == ()
    assert again.existing == names.all()
    # Fewer partitions than exist is fine (extra partitions are the operator's choice).
    assert ensure_topics(admin, names, 2, timeout=15).created == ()


def test_refuses_existing_topics_with_too_few_partitions(
    admin: AdminClient, names: TopicNames
) -> None:
    ensure_topics(admin, names, 2, timeout=15)
    wanted = dict.fromkeys(names.all(), 2) | {names.requests: 6, names.dlq: 3}
    with pytest.raises(TopicPartitionsError) as info:
        ensure_topics(admin, names, wanted, timeout=15)
    assert info.value.shortfalls == {names.requests: (2, 6), names.dlq: (2, 3)}
    assert f"{names.requests} has 2 partition(s), needs at least 6" in str(info.value)


def test_partly_existing_set_is_completed(admin: AdminClient, names: TopicNames) -> None:
    ensure_topics(admin, [names.requests], 2, timeout=15)
    result = ensure_topics(admin, names, 2, timeout=15)
    assert result.existing == (names.requests,)
    assert set(result.created) == set(names.all()) - {names.requests}


def test_concurrent_callers_both_succeed(
    kafka_bootstrap_servers: str, admin: AdminClient, names: TopicNames
) -> None:
    results: list[EnsureTopicsResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(ensure_topics(kafka_bootstrap_servers, names, 2, timeout=15))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(results) == 3
    # Every topic was created exactly once across the racers (TOPIC_ALREADY_EXISTS is fine).
    created = [t for r in results for t in r.created]
    assert sorted(created) == sorted(set(created))
    assert partition_counts(admin, names.all()) == dict.fromkeys(names.all(), 2)


def test_topic_config_is_applied(admin: AdminClient, names: TopicNames) -> None:
    ensure_topics(
        admin, [names.dlq], 1, timeout=15, topic_config={"retention.ms": str(30 * 86_400_000)}
    )
    resource = ConfigResource(ResourceType.TOPIC, names.dlq)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["retention.ms"].value == str(30 * 86_400_000)


def test_unreachable_broker_is_a_clear_error() -> None:
    names = TopicNames("unreachable", 1)
    with pytest.raises(TopicSetupError, match="metadata"):
        ensure_topics("127.0.0.1:1", names, 1, timeout=1)
