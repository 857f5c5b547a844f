"""``EventConsumer``: a thin, typed wrapper over ``confluent_kafka.Consumer``.

It keeps the raw client's semantics (the push consumer's logic lives in
``consumer/``) and adds types: messages become :class:`ConsumedMessage`,
partitions :class:`Partition`, errors :class:`~adapters.kafka.errors.ConsumerError`.

Offsets: built from :func:`~adapters.kafka.config.consumer_config`, nothing is
committed that was not *stored*, and :meth:`EventConsumer.store_offset` is
called only after the database transaction for a message committed. Auto-commit
then commits stored offsets in the background, :meth:`commit` does it now, and
:meth:`close` does it on the way out.

Rebalance callbacks run inside :meth:`poll_batch` on the calling thread. With
the cooperative-sticky assignor they receive only the partitions that change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from adapters.kafka.errors import ConsumerError, KafkaErrorInfo
from adapters.kafka.logs import ErrorReporter
from domain.messaging import Partition, PartitionsCallback

_log = logging.getLogger(__name__)

# Offset sentinel for "no committed offset" (RD_KAFKA_OFFSET_INVALID).
_OFFSET_INVALID = -1001


__all__ = ["ConsumedMessage", "EventConsumer", "Partition", "PartitionsCallback"]


@dataclass(frozen=True)
class ConsumedMessage:
    """An immutable, typed view of one consumed record.

    ``headers`` maps each key to its (last) value; ``header_items`` keeps every
    pair in order, duplicates included, for strict parsing
    (:func:`~adapters.kafka.headers.parse_headers` accepts either).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes | None]
    timestamp: datetime | None
    header_items: tuple[tuple[str, bytes | None], ...] = field(default=(), repr=False)
    leader_epoch: int | None = field(default=None, repr=False)

    @property
    def topic_partition(self) -> Partition:
        """The message's partition."""
        return Partition(self.topic, self.partition)

    @property
    def next_offset(self) -> int:
        """The offset to store/commit once this message is done (Kafka's convention)."""
        return self.offset + 1

    @classmethod
    def from_kafka(cls, msg: Message) -> ConsumedMessage:
        """Copy a ``confluent_kafka.Message`` (without error) into a typed view."""
        raw = msg.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        # A consumer always gets bytes (or None) values; str only exists on the produce side.
        items = tuple((k, v.encode("utf-8") if isinstance(v, str) else v) for k, v in pairs)
        ts_type, ts_ms = msg.timestamp()
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None:
            raise ValueError("Not a consumed record (no topic/partition/offset)")
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key=msg.key(),
            value=msg.value(),
            headers=dict(items),
            # ts_type 0 is TIMESTAMP_NOT_AVAILABLE.
            timestamp=datetime.fromtimestamp(ts_ms / 1000, UTC) if ts_type else None,
            header_items=items,
            leader_epoch=msg.leader_epoch(),
        )


class EventConsumer:
    """Consume pipeline events with typed messages and explicit offset storage.

    Build it from :func:`~adapters.kafka.config.consumer_config`; ``client``
    replaces the real ``confluent_kafka.Consumer`` (unit tests pass a fake with
    the same methods).
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        client: Consumer | None = None,
        error_reporter: ErrorReporter | None = None,
    ) -> None:
        if client is None:
            if config is None:
                raise ValueError("Pass a consumer config (or a client)")
            client = Consumer(dict(config))
        self._client = client
        error_cb = (config or {}).get("error_cb")
        # Message-level errors from consume() go through the same non-spamming reporter
        # as librdkafka's error_cb.
        self._reporter = error_reporter or (
            error_cb if isinstance(error_cb, ErrorReporter) else ErrorReporter(_log)
        )
        self._closed = False

    # --- group membership -----------------------------------------------------------------
    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        on_lost: PartitionsCallback | None = None,
    ) -> None:
        """Subscribe to ``topics`` with optional rebalance callbacks.

        ``on_revoke`` runs before partitions go to another member: the place to
        finish or abandon in-flight work and :meth:`commit`. ``on_lost`` runs when
        they were already taken (session timeout): committing is pointless then;
        without it, librdkafka calls ``on_revoke`` instead. The assignment itself
        is applied by the client after ``on_assign`` returns.
        """
        # The client refuses on_*=None: pass only the callbacks that were given.
        given = {"on_assign": on_assign, "on_revoke": on_revoke, "on_lost": on_lost}
        callbacks = {name: _adapt(cb) for name, cb in given.items() if cb is not None}
        self._client.subscribe(list(topics), **callbacks)

    def assignment(self) -> list[Partition]:
        """Partitions currently assigned to this member."""
        return [Partition(tp.topic, tp.partition) for tp in self._client.assignment()]

    # --- consuming ------------------------------------------------------------------------
    def poll_batch(self, max_messages: int = 500, timeout: float = 1.0) -> list[ConsumedMessage]:
        """Return up to ``max_messages`` records, waiting at most ``timeout`` seconds.

        Call it regularly (well within ``max.poll.interval.ms``): it also runs the
        rebalance, error and log callbacks. Non-fatal error events (broker down,
        unknown topic, ...) are logged without spam and skipped; librdkafka
        retries them. A fatal error raises :class:`ConsumerError`.
        """
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        try:
            # librdkafka's batch consume waits for the WHOLE timeout unless the batch
            # fills, which would add up to ``timeout`` of latency to every quiet-time
            # record. So: take what is queued; if nothing, block for the first record
            # only, then take whatever arrived with it.
            raw = self._client.consume(num_messages=max_messages, timeout=0)
            if not raw and timeout > 0:
                raw = self._client.consume(num_messages=1, timeout=timeout)
                if raw and max_messages > 1:
                    raw += self._client.consume(num_messages=max_messages - 1, timeout=0)
        except KafkaException as exc:
            raise ConsumerError("consume", KafkaErrorInfo.from_exception(exc)) from exc
        messages: list[ConsumedMessage] = []
        for msg in raw:
            err = msg.error()
            if err is None:
                messages.append(ConsumedMessage.from_kafka(msg))
                continue
            info = KafkaErrorInfo.from_kafka_error(err)
            if info.code == KafkaError._PARTITION_EOF:
                continue
            if info.fatal:
                raise ConsumerError("consume", info)
            self._reporter.report(info)
        return messages

    def pause(self, partitions: Iterable[Partition]) -> None:
        """Stop fetching ``partitions``; they stay assigned to this member.

        Records already fetched but not yet returned are dropped locally and
        fetched again after :meth:`resume`.
        """
        self._client.pause(_kafka_partitions(partitions))

    def resume(self, partitions: Iterable[Partition]) -> None:
        """Resume fetching ``partitions`` from the last consumed position."""
        self._client.resume(_kafka_partitions(partitions))

    # --- offsets --------------------------------------------------------------------------
    def store_offset(self, message: ConsumedMessage) -> bool:
        """Mark ``message`` done: its next offset will be committed. Call after the DB commit.

        Returns False (and stores nothing) when the partition is no longer assigned
        to this member: after a rebalance the new owner reprocesses the record and
        the idempotency key deduplicates it.
        """
        return self.store_offsets([message])

    def store_offsets(self, messages: Iterable[ConsumedMessage]) -> bool:
        """Store the next offset of each message (the highest per partition wins).

        Returns False if a partition was no longer assigned (see :meth:`store_offset`).
        """
        highest: dict[Partition, ConsumedMessage] = {}
        for message in messages:
            current = highest.get(message.topic_partition)
            if current is None or message.offset > current.offset:
                highest[message.topic_partition] = message
        if not highest:
            return True
        offsets = [
            TopicPartition(m.topic, m.partition, m.next_offset, leader_epoch=m.leader_epoch)
            if m.leader_epoch is not None
            else TopicPartition(m.topic, m.partition, m.next_offset)
            for m in highest.values()
        ]
        try:
            self._client.store_offsets(offsets=offsets)
        except KafkaException as exc:
            info = KafkaErrorInfo.from_exception(exc)
            if info.code in (KafkaError._STATE, KafkaError._UNKNOWN_PARTITION):
                _log.info("Offset not stored: partition no longer assigned (%s)", info)
                return False
            raise ConsumerError("store_offsets", info) from exc
        # librdkafka raises _STATE only if NO offset could be stored; a partial failure
        # (one of several partitions just revoked) is not reported back by the Python
        # client. That record is then reprocessed by its new owner and deduplicated.
        return True

    def commit(self, asynchronous: bool = False) -> dict[Partition, int]:
        """Commit the stored offsets now; return ``{partition: committed offset}``.

        Synchronous by default (used on revoke and shutdown). With nothing stored
        since the last commit this is a no-op returning ``{}``. Asynchronous
        commits return ``{}`` immediately; their failures (like auto-commit's)
        reach the ``on_commit`` reporter installed by ``consumer_config``.
        """
        try:
            if asynchronous:
                self._client.commit(asynchronous=True)
                return {}
            result = self._client.commit(asynchronous=False)
        except KafkaException as exc:
            info = KafkaErrorInfo.from_exception(exc)
            if info.code == KafkaError._NO_OFFSET:
                return {}
            raise ConsumerError("commit", info) from exc
        committed: dict[Partition, int] = {}
        for tp in result:
            if tp.error is not None:
                raise ConsumerError("commit", KafkaErrorInfo.from_kafka_error(tp.error))
            # Assigned partitions with nothing stored come back as OFFSET_INVALID: skip them.
            if tp.offset >= 0:
                committed[Partition(tp.topic, tp.partition)] = tp.offset
        return committed

    def committed(
        self, partitions: Iterable[Partition], timeout: float = 10.0
    ) -> dict[Partition, int | None]:
        """The group's committed offsets of ``partitions`` (None where nothing was committed)."""
        try:
            result = self._client.committed(_kafka_partitions(partitions), timeout=timeout)
        except KafkaException as exc:
            raise ConsumerError("committed", KafkaErrorInfo.from_exception(exc)) from exc
        return {
            Partition(tp.topic, tp.partition): None if tp.offset == _OFFSET_INVALID else tp.offset
            for tp in result
        }

    def close(self) -> None:
        """Leave the group, committing stored offsets; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._client.close()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _adapt(callback: PartitionsCallback) -> Callable[[Consumer, list[TopicPartition]], None]:
    def rebalance(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
        callback([Partition(tp.topic, tp.partition) for tp in partitions])

    return rebalance


def _kafka_partitions(partitions: Iterable[Partition]) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in partitions]
