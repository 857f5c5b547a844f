"""Ports of the push worker to the message broker and the wire format (no I/O here).

* :class:`InboundMessage` - a consumed record as the application sees it: where
  it came from, its key, value and raw header pairs (opaque bytes to the
  application; only the codec reads them);
* :class:`MessageConsumer` / :class:`MessageProducer` - what the worker's loop
  needs of a consumer group member and of a producer (``adapters.kafka``'s
  ``EventConsumer`` / ``EventProducer`` implement them; unit tests pass fakes);
* :class:`RecordCodec` - the wire format: decoding a record (headers and value)
  into a :class:`PushRequest`, or an :class:`Undecodable` saying why not, and
  building the headers and payloads of the events that answer it
  (``adapters.kafka.record_codec`` implements it over the Kafka headers and
  the Avro schemas).

Batches: the consumer already hands over and stores offsets in batches and
the codec's calls are pure functions of one record, so a batch-first worker
maps them over its batch without another port.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from domain.headers import EventHeaders, FailureInfo
from domain.model import DraftOrder, PushStatus

#: Raw header pairs of a record as the broker gives them (a key may repeat).
HeaderItems = tuple[tuple[str, bytes | None], ...]
#: Raw header pairs to produce.
HeaderPairs = Sequence[tuple[str, bytes | None]]


class Partition(NamedTuple):
    """One topic partition."""

    topic: str
    partition: int


PartitionsCallback = Callable[[list[Partition]], None]


class InboundMessage(Protocol):
    """A consumed record (``adapters.kafka.ConsumedMessage`` fits)."""

    @property
    def topic(self) -> str:
        """The topic it was read from."""
        ...

    @property
    def partition(self) -> int:
        """Its partition."""
        ...

    @property
    def offset(self) -> int:
        """Its offset in the partition."""
        ...

    @property
    def key(self) -> bytes | None:
        """The record key (the draft order id for pipeline records)."""
        ...

    @property
    def value(self) -> bytes | None:
        """The record value, undecoded."""
        ...

    @property
    def header_items(self) -> HeaderItems:
        """Every header pair in order, duplicates included (for strict parsing)."""
        ...


MessageT = TypeVar("MessageT", bound=InboundMessage)


class MessageConsumer(Protocol[MessageT]):
    """A consumer group member with explicit offset storage (``EventConsumer`` fits).

    Rebalance callbacks run inside :meth:`poll_batch`, on the calling thread.
    Offsets are stored only for completed records; :meth:`commit` commits the
    stored ones.
    """

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        on_lost: PartitionsCallback | None = None,
    ) -> None:
        """Join the group on ``topics`` with the rebalance callbacks."""
        ...

    def assignment(self) -> list[Partition]:
        """The partitions assigned to this member now."""
        ...

    def poll_batch(self, max_messages: int = 500, timeout: float = 1.0) -> Sequence[MessageT]:
        """Up to ``max_messages`` records, waiting at most ``timeout`` seconds for the first."""
        ...

    def pause(self, partitions: Iterable[Partition]) -> None:
        """Stop fetching ``partitions`` (they stay assigned)."""
        ...

    def resume(self, partitions: Iterable[Partition]) -> None:
        """Fetch ``partitions`` again."""
        ...

    def store_offsets(self, messages: Iterable[MessageT]) -> bool:
        """Store the next offset of each message; False if a partition was no longer ours."""
        ...

    def commit(self, asynchronous: bool = False) -> object:
        """Commit the stored offsets."""
        ...

    def close(self) -> None:
        """Leave the group."""
        ...


class DeliveryOutcome(Protocol):
    """The broker's verdict on one produced record (``DeliveryReport`` fits)."""

    @property
    def ok(self) -> bool:
        """True once the broker acknowledged the record."""
        ...

    @property
    def error(self) -> object:
        """Why it was not delivered (None when ``ok``); safe to log."""
        ...


class MessageProducer(Protocol):
    """What the worker needs of a producer: dead letters of poison records (``EventProducer``)."""

    def produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        headers: HeaderPairs | None = None,
        on_delivery: Callable[[DeliveryOutcome], None] | None = None,
    ) -> None:
        """Enqueue one record; its outcome arrives through ``on_delivery`` from :meth:`poll`."""
        ...

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks; return how many ran."""
        ...

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every enqueued record; return how many are still waiting."""
        ...


@dataclass(frozen=True)
class PushRequest:
    """A decoded ``PushRequested`` record: the order to push, the attempt, its headers.

    ``record`` is the value as the codec decoded it; the codec reads it back to
    build the payloads of the events that answer the request (so fields the
    application does not know travel on unchanged). The application does not
    read it.
    """

    headers: EventHeaders
    order: DraftOrder
    attempt: int
    push_round: int
    idempotency_key: str
    record: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def org_id(self) -> uuid.UUID:
        """The organisation the order belongs to."""
        return self.order.org_id


@dataclass(frozen=True)
class Undecodable:
    """A record that cannot be understood, and why (the handler dead-letters it).

    ``error_class`` and ``reason`` become the dead letter's ``error_class`` and
    ``error_message``; ``failure`` is the failure the record already carried
    (a retry record's), or None (a fresh failure, or headers too garbled to tell).
    """

    error_class: str
    reason: str
    failure: FailureInfo | None = None


class RecordCodec(Protocol):
    """The wire format of the push worker's records (see the module docstring).

    Every method is a pure function of its arguments (no I/O) and thread-safe.
    """

    def decode_request(self, message: InboundMessage) -> PushRequest | Undecodable:
        """The push request of ``message``; headers are checked first, then the value."""
        ...

    def due_at(self, message: InboundMessage) -> datetime | None:
        """When a retry-tier record may run (None: now, or its headers are garbled)."""
        ...

    def outbox_headers(self, headers: EventHeaders) -> dict[str, str]:
        """The text headers of an outbox event (the relay publishes them as they are)."""
        ...

    def dead_letter_headers(self, message: InboundMessage, failure: FailureInfo) -> HeaderPairs:
        """``message``'s own header pairs, byte for byte, with ``failure``'s replacing any."""
        ...

    def request_payload(self, request: PushRequest) -> dict[str, Any]:
        """The outbox payload of ``request`` unchanged (a deferred request)."""
        ...

    def retry_payload(
        self,
        request: PushRequest,
        *,
        event_id: uuid.UUID,
        idempotency_key: str,
        attempt: int,
        occurred_at: datetime,
    ) -> dict[str, Any]:
        """The outbox payload of ``request``'s next attempt (a retry-tier record)."""
        ...

    def result_payload(
        self,
        request: PushRequest,
        *,
        event_id: uuid.UUID,
        status: PushStatus,
        completed_at: datetime,
        connector_type: str | None,
        storage_key: str | None,
        erp_reference: str | None,
        error_class: str | None,
        error_message: str | None,
        latency_ms: int | None,
    ) -> dict[str, Any]:
        """The outbox payload of the ``PushResult`` answering ``request``."""
        ...
