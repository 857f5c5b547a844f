"""The Kafka adapter's exception tree.

Everything this package raises derives from :class:`KafkaAdapterError`, so the
relay and the consumer can catch one class at the adapter boundary, except the
header errors: a header that cannot be a header is a domain rule, so
:class:`HeaderError` and its subclasses live in ``domain.headers`` (re-exported
here). Messages are built from fixed text plus broker facts (topic names,
error codes); no payload or header *values* are echoed, so they are safe to log.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError

from domain.headers import HeaderError, InvalidHeaderError, MissingHeaderError

__all__ = [
    "ConsumerError",
    "HeaderError",
    "InvalidHeaderError",
    "KafkaAdapterError",
    "KafkaClientError",
    "KafkaErrorInfo",
    "MissingHeaderError",
    "ProduceError",
    "ProducerQueueFullError",
    "TopicNameError",
    "TopicPartitionsError",
    "TopicSetupError",
]


class KafkaAdapterError(Exception):
    """Base class of every error raised by ``adapters.kafka``."""


class TopicNameError(KafkaAdapterError, ValueError):
    """A topic prefix or derived topic name breaks Kafka's naming rules."""


class TopicSetupError(KafkaAdapterError):
    """Creating or checking topics failed (broker unreachable, not authorised, ...)."""


class TopicPartitionsError(TopicSetupError):
    """Existing topics have fewer partitions than configured.

    Fewer partitions than configured would silently cap consumer parallelism and,
    worse, mean other producers already hash keys onto a different layout; the
    operator has to decide (``kafka-topics --alter --partitions``), we do not.
    """

    def __init__(self, shortfalls: dict[str, tuple[int, int]]) -> None:
        self.shortfalls = dict(shortfalls)
        detail = ", ".join(
            f"{topic} has {have} partition(s), needs at least {want}"
            for topic, (have, want) in sorted(self.shortfalls.items())
        )
        super().__init__(f"Existing topics have too few partitions: {detail}")


@dataclass(frozen=True)
class KafkaErrorInfo:
    """A typed, immutable copy of a ``confluent_kafka.KafkaError``.

    Copying the few facts we use makes reports immutable, comparable and
    constructible in tests (a ``KafkaError`` is a C object tied to the client).
    """

    code: int
    name: str
    reason: str
    retriable: bool = False
    fatal: bool = False

    @classmethod
    def from_kafka_error(cls, err: KafkaError) -> KafkaErrorInfo:
        """Copy the facts of a ``confluent_kafka.KafkaError``."""
        return cls(
            code=err.code(),
            name=err.name(),
            reason=err.str(),
            retriable=err.retriable(),
            fatal=err.fatal(),
        )

    @classmethod
    def from_exception(cls, exc: BaseException) -> KafkaErrorInfo:
        """Copy the ``KafkaError`` carried by a ``KafkaException`` (or describe ``exc``)."""
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError):
            return cls.from_kafka_error(err)
        return cls(-1, type(exc).__name__, str(exc))

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class KafkaClientError(KafkaAdapterError):
    """A producer/consumer call failed with a Kafka error code."""

    def __init__(self, operation: str, info: KafkaErrorInfo) -> None:
        self.operation = operation
        self.info = info
        super().__init__(f"Kafka {operation} failed: {info}")


class ProduceError(KafkaClientError):
    """The message was NOT enqueued; the caller still owns it."""


class ProducerQueueFullError(ProduceError):
    """The local queue stayed full for the whole bounded wait; the message was NOT enqueued."""


class ConsumerError(KafkaClientError):
    """A consumer call failed (fatal consumer error, failed commit, ...)."""
