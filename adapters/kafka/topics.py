"""Topic names of the push pipeline and idempotent topic creation.

Every topic hangs off one configurable prefix, so several environments (or test
runs) can share a cluster::

    <prefix>.push.requests      PushRequested events, key = draft_order_id
    <prefix>.push.retry.<n>     retry tier n = 1..retry_tiers (delay base * 2^n)
    <prefix>.push.results       PushResult events for "push status" readers
    <prefix>.push.dlq           dead letters, with the reason in the headers

:func:`ensure_topics` runs at start-up of the relay and the consumer: it creates
what is missing and refuses to run against topics with fewer partitions than
configured (a smaller layout would hash keys differently from what other
producers expect and cap parallelism silently).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from adapters.kafka.config import admin_config
from adapters.kafka.errors import TopicNameError, TopicPartitionsError, TopicSetupError
from domain.events import EventRoute, TopicRole

_log = logging.getLogger(__name__)

#: Kafka's limit on topic name length (``Topic.MAX_NAME_LENGTH``).
MAX_TOPIC_NAME_LENGTH = 249
#: The broker's legal topic characters (``Topic.LEGAL_CHARS``).
_LEGAL_TOPIC = re.compile(r"^[A-Za-z0-9._-]+$")
#: Upper bound on retry tiers: delays double per tier, 2^32 s is already > 100 years.
MAX_RETRY_TIERS = 32


def validate_topic_name(name: str) -> str:
    """Return ``name`` if Kafka accepts it as a topic name, else raise :class:`TopicNameError`."""
    if not name:
        raise TopicNameError("Topic name must not be empty")
    if name in (".", ".."):
        raise TopicNameError(f"Topic name {name!r} is not allowed")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise TopicNameError(
            f"Topic name is {len(name)} characters long, Kafka allows {MAX_TOPIC_NAME_LENGTH}"
        )
    if not _LEGAL_TOPIC.match(name):
        raise TopicNameError(
            f"Topic name {name!r} may only contain ASCII letters, digits, '.', '_' and '-'"
        )
    return name


@dataclass(frozen=True)
class TopicNames:
    """The pipeline's topic names for one ``prefix`` and ``retry_tiers`` retry tiers.

    The prefix is validated on construction (charset, length of the longest
    derived name, no ``__`` which Kafka reserves for internal topics), so an
    instance always yields legal names.
    """

    prefix: str
    retry_tiers: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.retry_tiers, int) or isinstance(self.retry_tiers, bool):
            raise TopicNameError("retry_tiers must be an integer")
        if not 0 <= self.retry_tiers <= MAX_RETRY_TIERS:
            raise TopicNameError(f"retry_tiers must be between 0 and {MAX_RETRY_TIERS}")
        if not self.prefix:
            raise TopicNameError("Topic prefix must not be empty")
        if self.prefix.startswith("__"):
            raise TopicNameError("Topic prefix must not start with '__' (reserved by Kafka)")
        if self.prefix.startswith(".") or self.prefix.endswith("."):
            # Would produce names like ".push.requests" or "a..push.requests".
            raise TopicNameError("Topic prefix must not start or end with '.'")
        if not _LEGAL_TOPIC.match(self.prefix):
            raise TopicNameError(
                f"Topic prefix {self.prefix!r} may only contain ASCII letters, digits, "
                "'.', '_' and '-'"
            )
        # Checking the longest derived name covers every other one.
        longest = max(self.all(), key=len)
        if len(longest) > MAX_TOPIC_NAME_LENGTH:
            raise TopicNameError(
                f"Topic prefix is too long: {longest!r} would exceed "
                f"{MAX_TOPIC_NAME_LENGTH} characters"
            )

    @property
    def requests(self) -> str:
        """``<prefix>.push.requests``: where PushRequested events arrive."""
        return f"{self.prefix}.push.requests"

    @property
    def results(self) -> str:
        """``<prefix>.push.results``: PushResult events."""
        return f"{self.prefix}.push.results"

    @property
    def dlq(self) -> str:
        """``<prefix>.push.dlq``: dead letters."""
        return f"{self.prefix}.push.dlq"

    def retry(self, tier: int) -> str:
        """``<prefix>.push.retry.<tier>`` for ``tier`` in ``1..retry_tiers``."""
        if isinstance(tier, bool) or not 1 <= tier <= self.retry_tiers:
            raise ValueError(f"Retry tier must be between 1 and {self.retry_tiers}, got {tier!r}")
        return f"{self.prefix}.push.retry.{tier}"

    @property
    def retry_topics(self) -> tuple[str, ...]:
        """All retry tier topics, tier 1 first."""
        return tuple(self.retry(n) for n in range(1, self.retry_tiers + 1))

    def retry_tier_of(self, topic: str) -> int | None:
        """Return the tier number if ``topic`` is one of our retry tiers, else None."""
        head = f"{self.prefix}.push.retry."
        if not topic.startswith(head):
            return None
        tail = topic[len(head) :]
        if not tail.isdigit() or tail.startswith("0"):
            return None
        tier = int(tail)
        return tier if tier <= self.retry_tiers else None

    @property
    def consumed(self) -> tuple[str, ...]:
        """The topics the push consumer subscribes to: requests, then the retry tiers."""
        return (self.requests, *self.retry_topics)

    def topic_for(self, route: EventRoute) -> str:
        """The topic of an event type's route (``domain.events``): its role, its tier."""
        if route.role is TopicRole.REQUESTS:
            return self.requests
        if route.role is TopicRole.RESULTS:
            return self.results
        if route.role is TopicRole.DLQ:
            return self.dlq
        return self.retry(route.tier)

    def all(self) -> tuple[str, ...]:
        """Every topic of the pipeline: requests, retry tiers, results, DLQ."""
        return (self.requests, *self.retry_topics, self.results, self.dlq)


@dataclass(frozen=True)
class EnsureTopicsResult:
    """What :func:`ensure_topics` did: topics it created and topics that were there."""

    created: tuple[str, ...]
    existing: tuple[str, ...]
    partitions: Mapping[str, int]


def ensure_topics(
    admin_or_bootstrap: AdminClient | str,
    names: TopicNames | Iterable[str],
    partitions: int | Mapping[str, int],
    replication_factor: int = 1,
    timeout: float = 30.0,
    *,
    topic_config: Mapping[str, str] | None = None,
) -> EnsureTopicsResult:
    """Create the missing topics of ``names``; check existing ones have enough partitions.

    ``admin_or_bootstrap`` is a ``confluent_kafka.admin.AdminClient`` or a bootstrap
    servers string. ``partitions`` is one count for every topic or a mapping with a
    count per topic. Safe to call concurrently from several processes: a
    ``TOPIC_ALREADY_EXISTS`` answer counts as success. Returns once the broker's
    metadata lists every topic with its partitions (so a consumer subscribing
    right after sees the full layout), or raises :class:`TopicSetupError` after
    ``timeout`` seconds. Raises :class:`TopicPartitionsError` when an existing
    topic has fewer partitions than asked; extra partitions are accepted.
    """
    topics = list(names.all() if isinstance(names, TopicNames) else names)
    for topic in topics:
        validate_topic_name(topic)
    wanted = _wanted_partitions(topics, partitions)
    if replication_factor < 1:
        raise ValueError("replication_factor must be at least 1")
    admin = (
        AdminClient(admin_config(admin_or_bootstrap))
        if isinstance(admin_or_bootstrap, str)
        else admin_or_bootstrap
    )
    deadline = time.monotonic() + timeout

    present = _partition_counts(admin, topics, _remaining(deadline))
    missing = [t for t in topics if t not in present]
    created: list[str] = []
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    t,
                    num_partitions=wanted[t],
                    replication_factor=replication_factor,
                    config=dict(topic_config or {}),
                )
                for t in missing
            ],
            operation_timeout=_remaining(deadline),
            request_timeout=_remaining(deadline),
        )
        for topic, future in futures.items():
            try:
                future.result()
                created.append(topic)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    # Another process won the race; its partition count is checked below.
                    continue
                raise TopicSetupError(f"Could not create topic {topic}: {err}") from exc

    # Wait for metadata to show every topic: KRaft propagates a new topic to the
    # broker's metadata cache asynchronously, and a consumer subscribing before
    # that would start with a partial assignment.
    while True:
        present = _partition_counts(admin, topics, _remaining(deadline))
        if all(t in present for t in topics):
            break
        if time.monotonic() >= deadline:
            absent = sorted(t for t in topics if t not in present)
            raise TopicSetupError(f"Topics not visible in metadata after {timeout}s: {absent}")
        time.sleep(0.05)

    shortfalls = {t: (present[t], wanted[t]) for t in topics if present[t] < wanted[t]}
    if shortfalls:
        raise TopicPartitionsError(shortfalls)
    if created:
        _log.info("Created Kafka topics %s", ", ".join(created))
    return EnsureTopicsResult(
        created=tuple(created),
        existing=tuple(t for t in topics if t not in created),
        partitions={t: present[t] for t in topics},
    )


def _wanted_partitions(topics: list[str], partitions: int | Mapping[str, int]) -> dict[str, int]:
    if isinstance(partitions, int):
        wanted = dict.fromkeys(topics, partitions)
    else:
        absent = [t for t in topics if t not in partitions]
        if absent:
            raise ValueError(f"No partition count given for {absent}")
        wanted = {t: partitions[t] for t in topics}
    for topic, count in wanted.items():
        if isinstance(count, bool) or count < 1:
            raise ValueError(f"Partition count of {topic} must be at least 1, got {count!r}")
    return wanted


def _partition_counts(admin: AdminClient, topics: list[str], timeout: float) -> dict[str, int]:
    """Map each of ``topics`` that the broker knows (without error) to its partition count."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise TopicSetupError(f"Could not read cluster metadata: {exc.args[0]}") from exc
    counts: dict[str, int] = {}
    for topic in topics:
        meta = metadata.topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            counts[topic] = len(meta.partitions)
    return counts


def _remaining(deadline: float) -> float:
    # librdkafka rejects a zero timeout for admin calls; keep a small floor.
    return max(deadline - time.monotonic(), 0.1)
