"""The push worker's hot-path writes, as values a batched store takes (no I/O here).

The push worker claims an attempt and later records its outcome with its
outbox events. Under load many worker threads do this at once; a batched
store (``adapters.postgres.push_log_sql``) writes the claims (or the outcomes)
of several threads in ONE statement. These values are what one thread hands
over and what it gets back; each keeps the per-record meaning of
``PushLogStore.claim`` / ``update_outcome`` + ``OutboxStore.add``.
:class:`PushLogWriter` is the port of such a store.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from domain.model import PushStatus
from domain.records import ConnectionRecord, OutboxEvent, PushLogEntry


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """Claim ``entry`` (a new PENDING row) if the order's history allows the quick way.

    The quick way inserts the row only when its idempotency key is new AND,
    for attempt 0, the (org, order) has no push-log row at all, or, for a later
    attempt, no SUCCESS row and no row of a later push round. Anything else
    (history to look at, a conflicting key) is left alone and answered "not
    claimed": the caller then runs the full logic (duplicate, deferral,
    take-over), which sees an unchanged table.
    """

    entry: PushLogEntry


@dataclass(frozen=True, slots=True)
class ClaimGrant:
    """The answer to a :class:`ClaimRequest`.

    ``claimed`` is True if the row was inserted (and committed);
    ``connection`` is the organisation's ACTIVE connection read in the same
    statement (``None``: it has none; the row then has no connector type).
    """

    claimed: bool
    connection: ConnectionRecord | None = None


@dataclass(frozen=True, slots=True)
class OutcomeWrite:
    """Record a claimed attempt's outcome and write its outbox events, atomically.

    The row is updated only while it is PENDING; the events are written only
    if it was (the outcome of a worker whose lease expired and whose attempt
    someone else recorded is dropped, with its events).
    """

    entry_id: uuid.UUID
    status: PushStatus
    now: datetime
    response_json: dict[str, Any] | None = None
    error_message: str | None = None
    latency_ms: int | None = None
    #: With their Kafka ``value`` already encoded (``None``: the relay encodes it).
    events: Sequence[OutboxEvent] = ()


class PushLogWriter(Protocol):
    """The push log's batched writer: one statement (one transaction) per call.

    ``adapters.postgres.push_log_sql.PushLogBatchWriter`` implements it on
    PostgreSQL; each call is atomic and committed when it returns.
    """

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[ClaimGrant]:
        """One :class:`ClaimGrant` per request, in order."""
        ...

    def record_many(self, writes: Sequence[OutcomeWrite]) -> list[bool]:
        """Per write: True if recorded (the row was PENDING), with its events."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
