"""Reading the dead-letter topic without a consumer group: ``DlqReader``, ``DlqRecord``.

Partitions are assigned directly and read from a start offset up to the end
offsets taken when the command started, so nothing is committed and a live DLQ
does not keep the command running. ``orderflow dlq list`` is :func:`list_records`;
replaying is ``entrypoints.dlq``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from adapters.avro.codec import AvroCodecError, decode_push_requested
from adapters.avro.records import draft_order_from_push_requested
from adapters.kafka.errors import HeaderError
from adapters.kafka.headers import (
    EVENT_ID,
    IDEMPOTENCY_KEY,
    FailureInfo,
    header_values,
    parse_failure_headers,
)
from domain.model import DraftOrder


class DlqError(Exception):
    """A selection that matches nothing or an unusable DLQ (one line; the CLI exits 1)."""


@dataclass(frozen=True)
class DlqRecord:
    """One DLQ record as read (value bytes kept for replay, never printed)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    header_items: tuple[tuple[str, bytes | None], ...]

    @property
    def event_id(self) -> str | None:
        """The ``event_id`` header as text, if readable."""
        return self._header(EVENT_ID)

    @property
    def idempotency_key(self) -> str | None:
        """The ``idempotency_key`` header as text, if readable."""
        return self._header(IDEMPOTENCY_KEY)

    def _header(self, name: str) -> str | None:
        try:
            return header_values(self.header_items, only=(name,)).get(name)
        except HeaderError:
            return None

    def push_request(self) -> DraftOrder | None:
        """The order of the value if it is a valid ``PushRequested``, else None."""
        try:
            return draft_order_from_push_requested(decode_push_requested(self.value))
        except AvroCodecError:
            return None

    def failure(self) -> tuple[FailureInfo | None, str | None]:
        """``(failure headers, None)`` or ``(None, why they are unusable)``."""
        try:
            info = parse_failure_headers(self.header_items)
        except HeaderError as exc:
            return None, str(exc)
        if info is None:
            return None, "no failure headers"
        return info, None

    def view(self) -> dict[str, Any]:
        """What ``dlq list`` prints of the record (no value: it may hold anything)."""
        info, problem = self.failure()
        return {
            "partition": self.partition,
            "offset": self.offset,
            "key": key_text(self.key),
            "event_id": self.event_id,
            "error_class": info.error_class if info else None,
            "error_message": info.error_message if info else None,
            "original_topic": info.original_topic if info else None,
            "original_partition": info.original_partition if info else None,
            "original_offset": info.original_offset if info else None,
            "first_failure_at": info.first_failure_at.isoformat() if info else None,
            "header_problem": problem,
        }


def key_text(key: bytes | None) -> str | None:
    """A record key as text for a report (UTF-8, else ``hex:`` and its hex), ``None`` for no key."""
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + key.hex()


def parse_offset(text: str) -> tuple[int, int]:
    """Parse ``partition:offset`` (both non-negative integers)."""
    match = re.fullmatch(r"(\d{1,9}):(\d{1,19})", text.strip())
    if match is None:
        raise ValueError(f"not PARTITION:OFFSET: {text!r}")
    return int(match.group(1)), int(match.group(2))


# --- reading ---------------------------------------------------------------------------------


class DlqReader:
    """Reads a DLQ topic by direct assignment (no group membership, no commits)."""

    def __init__(self, bootstrap_servers: str, topic: str, timeout: float) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        self.timeout = timeout
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                # Required by the client; never used: we assign and never commit.
                "group.id": f"orderflow-dlq-cli-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "log.connection.close": False,
            }
        )

    def close(self) -> None:
        """Close the client."""
        self._consumer.close()

    def __enter__(self) -> DlqReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def watermarks(self) -> dict[int, tuple[int, int]]:
        """``{partition: (low, high)}`` of the topic now; DlqError if it does not exist."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            metadata = self._consumer.list_topics(self.topic, timeout=self.timeout)
            meta = metadata.topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise DlqError(f"DLQ topic {self.topic} does not exist")
            return {
                p: self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=self.timeout
                )
                for p in sorted(meta.partitions)
            }
        except KafkaException as exc:
            raise DlqError(f"cannot read DLQ topic {self.topic}: {exc.args[0]}") from None

    def topics(self) -> frozenset[str]:
        """The names of the cluster's topics (to check a replay target exists)."""
        from confluent_kafka import KafkaException

        try:
            metadata = self._consumer.list_topics(timeout=self.timeout)
        except KafkaException as exc:
            raise DlqError(f"cannot read cluster metadata: {exc.args[0]}") from None
        return frozenset(t for t, m in metadata.topics.items() if m.error is None)

    def read(self, ranges: Mapping[int, tuple[int, int]]) -> Iterator[DlqRecord]:
        """Yield the records of ``{partition: (start, end)}`` (end exclusive), partition-wise.

        Raises :class:`DlqError` if the ranges are not read within the timeout.
        """
        from confluent_kafka import TopicPartition

        pending = {p: (s, e) for p, (s, e) in ranges.items() if e > s}
        for partition in sorted(pending):
            start, end = pending[partition]
            self._consumer.assign([TopicPartition(self.topic, partition, start)])
            deadline = time.monotonic() + self.timeout
            position = start
            while position < end:
                if time.monotonic() > deadline:
                    raise DlqError(
                        f"timed out after {self.timeout}s reading {self.topic} "
                        f"partition {partition} (at offset {position} of {end})"
                    )
                for msg in self._consumer.consume(500, 0.5):
                    if msg.error() is not None:
                        continue
                    offset = msg.offset()
                    if offset is None or offset >= end:
                        position = end
                        continue
                    position = offset + 1
                    yield DlqRecord(
                        partition=partition,
                        offset=offset,
                        key=msg.key(),
                        value=msg.value(),
                        header_items=_items(msg.headers()),
                    )
                if position < end:
                    # Gaps (compaction, transaction markers): trust the client's position.
                    got = self._consumer.position([TopicPartition(self.topic, partition)])
                    if got and got[0].offset is not None and got[0].offset >= end:
                        position = end
            self._consumer.unassign()


def _items(raw: Any) -> tuple[tuple[str, bytes | None], ...]:
    pairs = raw.items() if isinstance(raw, dict) else (raw or [])
    return tuple((k, v.encode("utf-8") if isinstance(v, str) else v) for k, v in pairs)


# --- list ------------------------------------------------------------------------------------


def list_records(bootstrap_servers: str, dlq_topic: str, out: TextIO, timeout: float) -> int:
    """Print every record of ``dlq_topic`` present now as a JSON array; return the count."""
    import json

    count = 0
    with DlqReader(bootstrap_servers, dlq_topic, timeout) as reader:
        marks = reader.watermarks()
        out.write("[")
        for record in reader.read(marks):
            out.write(("\n" if count == 0 else ",\n") + json.dumps(record.view(), sort_keys=True))
            count += 1
        out.write("\n]\n" if count else "]\n")
    return count


# --- replay ----------------------------------------------------------------------------------
