"""The push log's writes: claims and outcomes, a batch per statement (no I/O here).

Every push claims an attempt (a PENDING row, committed before the ERP is
called) and later records its outcome together with its outbox events. The
push worker does both for a whole batch of records at once; the synchronous
``PushService`` does them with a batch of one. :class:`PushLogWriter` is the
one port of these writes (``adapters.postgres.push_log_sql`` on PostgreSQL,
an in-memory fake in the unit tests); these values are what a caller hands
over and gets back.
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
    """Claim ``entry`` (a new PENDING row): inserted only if its idempotency key is new.

    With ``fresh_only`` (the push worker's first look at a record) the row is
    inserted only when, besides, for attempt 0 the (org, order) has no
    push-log row at all, or for a later attempt no SUCCESS row and no row of a
    later push round. Anything else (history to look at, a conflicting key) is
    left alone and answered "not claimed": the caller then runs the full logic
    (duplicate, deferral, take-over), which sees an unchanged table and claims
    with ``fresh_only=False`` once it decided the attempt is due.
    """

    entry: PushLogEntry
    fresh_only: bool = True


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
    """The push log's writer: one statement (one transaction) per call, any batch size.

    ``adapters.postgres.push_log_sql.PushLogBatchWriter`` implements it on
    PostgreSQL; each call is atomic and committed when it returns. The
    requests of one call have distinct idempotency keys.
    """

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[ClaimGrant]:
        """One :class:`ClaimGrant` per request, in order (a key that exists is not claimed)."""
        ...

    def record_many(self, writes: Sequence[OutcomeWrite]) -> list[bool]:
        """Per write: True if recorded (the row was PENDING), with its events in order.

        An event without a ``value`` gets the writer's encoding of it (the
        relay publishes stored bytes).
        """
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
