"""Looking at the pipeline from the outside: topics, the push log, the dropzone.

Everything here only reads: topics are read from the beginning with a fresh,
manually assigned consumer (no group offsets involved), the push log with one
query, the dropzone on the SFTP server's disk (the private instance's
``SFTP_DROPZONE_DIR``). :class:`DropzoneWatcher` scans the dropzone while the
run goes on, to see a file replaced by a second upload (each upload renames a
new file, a new inode, onto the deterministic path).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from adapters.kafka.consumer import ConsumedMessage
from chaos.checker import DLQ, RESULTS, DropzoneFile, PushLogRow, WireRecord
from entrypoints.push_results import follow_push_results

_log = logging.getLogger("orderflow.chaos")
_QUIET = logging.getLogger("orderflow.chaos.follower")
_QUIET.setLevel(logging.CRITICAL)


class ObserveError(RuntimeError):
    """A topic could not be read to its end in time."""


def read_topic(
    bootstrap_servers: str, topic: str, timeout_s: float = 120.0
) -> list[ConsumedMessage]:
    """Every record of ``topic``, from the beginning up to its current end."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"chaos-check-{uuid.uuid4().hex[:10]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "log_level": 3,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise ObserveError(f"topic {topic} not found")
        ends: dict[int, int] = {}
        for partition in sorted(described.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            if high > low:
                ends[partition] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        messages: list[ConsumedMessage] = []
        remaining = set(ends)
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise ObserveError(f"{topic}: partitions {sorted(remaining)} not read to the end")
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                messages.append(ConsumedMessage.from_kafka(msg))
            for position in consumer.position(
                [TopicPartition(topic, p) for p in sorted(remaining)]
            ):
                if position.offset >= ends[position.partition]:
                    remaining.discard(position.partition)
        return messages
    finally:
        consumer.close()


#: Every run's topics are named ``chaos<random>.push.*``.
TOPIC_PREFIX = "chaos"


def stale_topics(bootstrap_servers: str) -> list[str]:
    """Topics of earlier runs on the private broker (a red run keeps its topics)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 3})
    names = admin.list_topics(timeout=30).topics
    return sorted(n for n in names if n.startswith(TOPIC_PREFIX) and ".push." in n)


def delete_topics(bootstrap_servers: str, names: Sequence[str]) -> None:
    """Delete a passed run's topics, so runs do not pile up partitions in the private broker."""
    from confluent_kafka.admin import AdminClient

    if not names:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 3})
    for name, future in admin.delete_topics(list(names), operation_timeout=30).items():
        try:
            future.result(timeout=60)
        except Exception as exc:  # cleanup only: a left-over topic harms nothing
            _log.warning("Could not delete topic %s: %s", name, exc)


def _header(message: ConsumedMessage, name: str) -> str | None:
    raw = message.headers.get(name)
    return raw.decode("utf-8", "replace") if raw is not None else None


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def wire_record(kind: str, message: ConsumedMessage) -> WireRecord | None:
    """The checker's view of one record (``None`` if it names no draft order)."""
    from adapters.avro.codec import AvroCodecError, decode_push_requested, decode_push_result

    order = _uuid(message.key.decode("utf-8", "replace")) if message.key else None
    event_id = _uuid(_header(message, "event_id"))
    attempt_text = _header(message, "attempt")
    attempt = int(attempt_text) if attempt_text and attempt_text.isdigit() else -1
    status: str | None = None
    if kind != DLQ:
        try:
            if kind == RESULTS:
                record: dict[str, Any] = decode_push_result(message.value)
                status = str(record["status"])
            else:
                record = decode_push_requested(message.value)
        except AvroCodecError:
            _log.warning("Undecodable %s record at %d@%d", kind, message.partition, message.offset)
        else:
            order = _uuid(record["draft_order_id"])
            event_id = _uuid(record["event_id"])
            attempt = int(record["attempt"])
    if order is None:
        return None
    return WireRecord(kind, message.partition, message.offset, order, event_id, attempt, status)


def read_wire(
    bootstrap_servers: str, topics: dict[str, list[str]], timeout_s: float = 120.0
) -> list[WireRecord]:
    """Read every topic of ``topics`` (kind -> topic names) into wire records."""
    out: list[WireRecord] = []
    for kind, names in topics.items():
        for name in names:
            for message in read_topic(bootstrap_servers, name, timeout_s):
                record = wire_record(kind, message)
                if record is not None:
                    out.append(record)
    return out


def read_push_log(engine: Engine, org_id: uuid.UUID) -> list[PushLogRow]:
    """Every push-log row of the organisation."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT draft_order_id, attempt, status, created_at, updated_at"
                " FROM erp_push_log WHERE org_id = :org"
            ),
            {"org": org_id},
        ).all()
    return [
        PushLogRow(
            order_id=uuid.UUID(str(row[0])),
            attempt=int(row[1]),
            status=str(row[2]),
            created_at=row[3],
            updated_at=row[4],
        )
        for row in rows
    ]


def _order_of(name: str) -> uuid.UUID | None:
    if name.startswith(".") or not name.endswith(".json"):
        return None
    return _uuid(name[: -len(".json")])


class DropzoneWatcher:
    """Scans ``folder`` every ``interval_s`` and remembers the inodes seen per order file."""

    def __init__(self, folder: Path, interval_s: float = 1.0) -> None:
        self.folder = folder
        self.interval_s = interval_s
        self._inodes: dict[uuid.UUID, set[int]] = defaultdict(set)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dropzone watcher", daemon=True)

    def start(self) -> DropzoneWatcher:
        """Start scanning in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop scanning (after one last scan)."""
        self._stop.set()
        self._thread.join(30)
        self.scan()

    def scan(self) -> None:
        """Record the inode of every order file present now."""
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return
        with self._lock:
            for entry in entries:
                order = _order_of(entry.name)
                if order is not None:
                    self._inodes[order].add(entry.inode())

    def versions(self, order: uuid.UUID) -> int:
        """Distinct files seen at the order's path (at least 1 once it exists)."""
        with self._lock:
            return max(1, len(self._inodes.get(order, ())))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.scan()


def list_dropzone(
    folder: Path, versions: Callable[[uuid.UUID], int] = lambda _order: 1
) -> tuple[list[DropzoneFile], int]:
    """The order files in ``folder`` (with mtime) and how many hidden temporary files remain."""
    files: list[DropzoneFile] = []
    temporary = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return [], 0
    for entry in entries:
        if entry.name.startswith("."):
            temporary += 1
            continue
        order = _order_of(entry.name)
        if order is None:
            continue
        mtime = datetime.fromtimestamp(entry.stat().st_mtime_ns / 1e9, UTC)
        files.append(DropzoneFile(order, mtime, versions(order)))
    return files, temporary


@dataclass
class ResultsProgress:
    """Distinct draft orders with a PushResult so far (filled by :func:`follow_results`)."""

    orders: set[uuid.UUID]
    lock: threading.Lock

    def count(self) -> int:
        """How many orders have a result."""
        with self.lock:
            return len(self.orders)


def follow_results(
    bootstrap_servers: str, topic: str, progress: ResultsProgress, stop: threading.Event
) -> None:
    """Follow the results topic (own group, from the beginning) until ``stop`` is set."""

    def add(record: dict[str, Any], _read_at: float) -> None:
        order = uuid.UUID(str(record["draft_order_id"]))
        with progress.lock:
            progress.orders.add(order)

    # Broker restarts are the point of the run: the follower just waits them out.
    follow_push_results(bootstrap_servers, topic, add, stop, reader="chaos-follower", logger=_QUIET)
