"""Fakes of the worker's broker ports (``domain.messaging.MessageConsumer`` / ``MessageProducer``).

Two ways to use them:

* scripted (no broker): the worker's unit tests push whole batches into
  ``FakeConsumer.batches``, set ``assigned`` and call the rebalance callbacks
  themselves; ``FakeProducer`` only records what was produced;
* over a :class:`FakeBroker` shared by producers and consumers: produced
  records land in in-memory partitions once their delivery is reported, and
  consumers of one group split the partitions, fetch from the group's
  committed offsets and commit what they stored. The messaging contract
  (``tests/contract/messaging_contract.py``) runs against this mode.

Everything runs on the calling thread: delivery callbacks inside ``poll`` /
``flush``, rebalance callbacks inside ``poll_batch`` (as librdkafka does).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from adapters.kafka.consumer import ConsumedMessage
from domain.messaging import (
    DeliveryOutcome,
    HeaderItems,
    HeaderPairs,
    Partition,
    PartitionsCallback,
)


@dataclass(frozen=True)
class Report:
    """A delivery outcome (``domain.messaging.DeliveryOutcome``)."""

    ok: bool
    error: str | None = None


class FakeBroker:
    """In-memory topics and consumer groups.

    A key always maps to the same partition (a CRC32 hash, like a real
    partitioner's fixed hash); records without a key go round-robin. Each group
    spreads the partitions of its members' topics evenly; a partition moving to
    another member is handed over only once its previous owner revoked it
    (cooperative rebalancing), which members do inside their ``poll_batch``.
    """

    def __init__(self) -> None:
        self.logs: dict[Partition, list[ConsumedMessage]] = {}
        self.partition_counts: dict[str, int] = {}
        self.committed: dict[tuple[str, Partition], int] = {}
        self._members: dict[str, list[FakeConsumer]] = {}
        self._targets: dict[int, set[Partition]] = {}
        self._round_robin = 0

    # --- topics ----------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1) -> str:
        """Create ``name`` with ``partitions`` empty partitions; return the name."""
        self.partition_counts[name] = partitions
        for n in range(partitions):
            self.logs[Partition(name, n)] = []
        return name

    def partitions_of(self, topics: Iterable[str]) -> list[Partition]:
        """Every partition of ``topics`` (unknown topics have none)."""
        return [
            Partition(topic, n)
            for topic in topics
            for n in range(self.partition_counts.get(topic, 0))
        ]

    def append(
        self, topic: str, key: bytes | None, value: bytes | None, headers: HeaderItems
    ) -> ConsumedMessage:
        """Store one record at the end of its partition; raise KeyError for an unknown topic."""
        count = self.partition_counts[topic]
        if key is None:
            self._round_robin += 1
            number = self._round_robin % count
        else:
            number = zlib.crc32(key) % count
        log = self.logs[Partition(topic, number)]
        record = ConsumedMessage(topic, number, len(log), key, value, dict(headers), None, headers)
        log.append(record)
        return record

    # --- groups ----------------------------------------------------------------------
    def join(self, group: str, member: FakeConsumer) -> None:
        """Add ``member`` to ``group`` (or keep it) and rebalance the group."""
        members = self._members.setdefault(group, [])
        if member not in members:
            members.append(member)
        self._rebalance(group)

    def leave(self, group: str, member: FakeConsumer) -> None:
        """Remove ``member`` from ``group`` and rebalance the others."""
        members = self._members.get(group, [])
        if member in members:
            members.remove(member)
        self._targets.pop(id(member), None)
        self._rebalance(group)

    def target_of(self, member: FakeConsumer) -> set[Partition]:
        """The partitions the group means ``member`` to own."""
        return set(self._targets.get(id(member), set()))

    def held_by_another(self, group: str, member: FakeConsumer, partition: Partition) -> bool:
        """True while another member of ``group`` still owns ``partition``."""
        return any(
            partition in other.assigned
            for other in self._members.get(group, [])
            if other is not member
        )

    def _rebalance(self, group: str) -> None:
        members = self._members.get(group, [])
        if not members:
            return
        wanted = sorted(
            {p for m in members for p in self.partitions_of(m.topics)},
            key=lambda p: (p.topic, p.partition),
        )
        quota = {
            id(m): len(wanted) // len(members) + (i < len(wanted) % len(members))
            for i, m in enumerate(members)
        }
        # Sticky: a member keeps what it owns, up to its share; the rest is spread out.
        targets: dict[int, set[Partition]] = {}
        free = list(wanted)
        for member in members:
            kept = [p for p in wanted if p in member.assigned][: quota[id(member)]]
            targets[id(member)] = set(kept)
            free = [p for p in free if p not in kept]
        for member in members:
            while len(targets[id(member)]) < quota[id(member)] and free:
                targets[id(member)].add(free.pop(0))
        self._targets.update(targets)


@dataclass(eq=False)
class FakeConsumer:
    """A consumer group member (``MessageConsumer[ConsumedMessage]``), scripted or on a broker.

    Scripted batches in ``batches`` are served first, whole. ``stored`` lists
    ``(topic, next offset)`` of every message stored, ``commits`` counts commits.
    Like librdkafka, a partition's pause flag survives revoke and assign.
    """

    broker: FakeBroker | None = None
    group: str = "fake-group"
    batches: list[list[ConsumedMessage]] = field(default_factory=list)
    paused: set[Partition] = field(default_factory=set)
    stored: list[tuple[str, int]] = field(default_factory=list)
    assigned: list[Partition] = field(default_factory=list)
    commits: int = 0
    closed: bool = False
    #: The rebalance callbacks given to ``subscribe`` ("assign", "revoke", "lost").
    callbacks: dict[str, PartitionsCallback] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)
    #: Next offset to fetch per owned partition (broker mode).
    positions: dict[Partition, int] = field(default_factory=dict)
    #: Highest next offset stored per partition since the last commit.
    to_commit: dict[Partition, int] = field(default_factory=dict)

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        on_lost: PartitionsCallback | None = None,
    ) -> None:
        """Record the callbacks; on a broker, join the group (assignment comes in poll_batch)."""
        given = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        self.callbacks = {name: cb for name, cb in given.items() if cb is not None}
        self.topics = list(topics)
        if self.broker is not None:
            self.broker.join(self.group, self)

    def assignment(self) -> list[Partition]:
        """The partitions owned now."""
        return list(self.assigned)

    def poll_batch(self, max_messages: int = 500, timeout: float = 1.0) -> list[ConsumedMessage]:
        """A scripted batch, else (on a broker) up to ``max_messages`` unpaused records."""
        if self.closed:
            raise RuntimeError("poll_batch on a closed consumer")
        if self.batches:
            return self.batches.pop(0)
        if self.broker is None:
            time.sleep(0.001)  # a loop run by ``PushWorker.run`` does not spin
            return []
        self._apply_rebalance(self.broker)
        out: list[ConsumedMessage] = []
        for partition in self.assigned:
            if partition in self.paused:
                continue
            position = self.positions[partition]
            taken = self.broker.logs[partition][position : position + max_messages - len(out)]
            out += taken
            self.positions[partition] = position + len(taken)
            if len(out) >= max_messages:
                break
        if not out:
            time.sleep(0.001)
        return out

    def _apply_rebalance(self, broker: FakeBroker) -> None:
        target = broker.target_of(self)
        revoked = [p for p in self.assigned if p not in target]
        if revoked:
            callback = self.callbacks.get("revoke")
            if callback is not None:
                callback(revoked)
            self.assigned = [p for p in self.assigned if p not in revoked]
            for partition in revoked:
                self.positions.pop(partition, None)
                self.to_commit.pop(partition, None)
        new = sorted(
            (
                p
                for p in target
                if p not in self.assigned and not broker.held_by_another(self.group, self, p)
            ),
            key=lambda p: (p.topic, p.partition),
        )
        if new:
            for partition in new:
                self.positions[partition] = broker.committed.get((self.group, partition), 0)
            self.assigned += new
            callback = self.callbacks.get("assign")
            if callback is not None:
                callback(list(new))

    def pause(self, partitions: Iterable[Partition]) -> None:
        """Stop fetching ``partitions``."""
        self.paused |= set(partitions)

    def resume(self, partitions: Iterable[Partition]) -> None:
        """Fetch ``partitions`` again."""
        self.paused -= set(partitions)

    def store_offsets(self, messages: Iterable[ConsumedMessage]) -> bool:
        """Store the next offset of each message of an owned partition; False if none was owned."""
        given = list(messages)
        owned = [m for m in given if m.topic_partition in self.assigned]
        self.stored += [(m.topic, m.next_offset) for m in owned]
        for m in owned:
            current = self.to_commit.get(m.topic_partition, 0)
            self.to_commit[m.topic_partition] = max(current, m.next_offset)
        # Like librdkafka: refused only when no offset at all could be stored.
        return bool(owned) or not given

    def commit(self, asynchronous: bool = False) -> dict[Partition, int]:
        """Commit the stored offsets (to the broker's group, if any); return them."""
        self.commits += 1
        done, self.to_commit = self.to_commit, {}
        if self.broker is not None:
            for partition, offset in done.items():
                self.broker.committed[(self.group, partition)] = offset
        return done

    def close(self) -> None:
        """Leave the group; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self.broker is not None:
            self.broker.leave(self.group, self)
        self.assigned = []


@dataclass
class FakeProducer:
    """A producer (``MessageProducer``) whose broker acknowledges on ``poll`` / ``flush``.

    ``sent`` lists ``(topic, value)`` of every record produced; the next
    ``fail_next`` deliveries fail (nothing stored); while ``hold`` is True poll
    acknowledges nothing (flush lifts it). On a broker, an acknowledged record
    is appended to its partition.
    """

    broker: FakeBroker | None = None
    sent: list[tuple[str, bytes | None]] = field(default_factory=list)
    waiting: list[tuple[Callable[[DeliveryOutcome], None] | None, Callable[[], None]]] = field(
        default_factory=list
    )
    fail_next: int = 0
    #: While True the broker acknowledges nothing (poll serves no callback).
    hold: bool = False

    def produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        headers: HeaderPairs | None = None,
        on_delivery: Callable[[DeliveryOutcome], None] | None = None,
    ) -> None:
        """Enqueue one record; it is stored and reported on a later poll or flush."""
        self.sent.append((topic, value))
        key_bytes = key.encode("utf-8") if isinstance(key, str) else key
        items: HeaderItems = tuple(headers or ())
        broker = self.broker

        def store() -> None:
            if broker is not None:
                broker.append(topic, key_bytes, value, items)

        self.waiting.append((on_delivery, store))

    def poll(self, timeout: float = 0.0) -> int:
        """Acknowledge every waiting record (unless held); return how many callbacks ran."""
        if self.hold:
            return 0
        served, self.waiting = self.waiting, []
        ran = 0
        for callback, store in served:
            if self.fail_next:
                self.fail_next -= 1
                report = Report(False, "broker down")
            else:
                store()
                report = Report(True)
            if callback is not None:
                callback(report)
                ran += 1
        return ran

    def flush(self, timeout: float = 30.0) -> int:
        """Acknowledge everything waiting; return 0 (nothing left)."""
        self.hold = False
        while self.waiting:
            self.poll()
        return 0
