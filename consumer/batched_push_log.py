"""The push worker's claims and outcomes, written in groups across worker threads.

:class:`BatchedPushLog` puts two :class:`~consumer.group_commit.GroupCommitter`
in front of a batched store (the :class:`~domain.push_writes.PushLogWriter`
port; ``adapters.postgres.push_log_sql`` on PostgreSQL): one for
claims, one for outcomes with their outbox events. A worker thread calls
:meth:`BatchedPushLog.claim` / :meth:`BatchedPushLog.record` and blocks until
the batch holding its item committed, so the per-record rules are unchanged:
the claim is committed before the ERP is called, the outcome and its events
commit together, and a record counts as complete only after that commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from consumer.group_commit import GroupCommitter
from consumer.push_attempt import AttemptOutcome
from domain.push_writes import ClaimGrant, ClaimRequest, OutcomeWrite, PushLogWriter
from domain.records import OutboxEvent, PushLogEntry

#: Encodes an outbox event's Kafka value as it is written (``None``: the relay encodes it).
ValueEncoder = Callable[[OutboxEvent], bytes | None]


class BatchedPushLog:
    """Group-committed claims and outcomes (see the module docstring).

    ``writer_factory`` builds one writer per committer thread (each owns a
    connection): ``flushers`` threads for claims and as many for outcomes.
    ``encoder`` encodes each outbox event's value in the calling
    worker thread, as ``SqlOutboxStore`` does.
    """

    def __init__(
        self,
        writer_factory: Callable[[], PushLogWriter],
        *,
        encoder: ValueEncoder | None = None,
        max_batch: int = 256,
        flushers: int = 2,
    ) -> None:
        if flushers < 1:
            raise ValueError("flushers must be at least 1")
        self._claim_writers = [writer_factory() for _ in range(flushers)]
        self._record_writers = [writer_factory() for _ in range(flushers)]
        self._encoder = encoder
        self._claims: GroupCommitter[ClaimRequest, ClaimGrant] = GroupCommitter(
            [w.claim_many for w in self._claim_writers], max_batch=max_batch, name="push-claims"
        )
        self._outcomes: GroupCommitter[OutcomeWrite, bool] = GroupCommitter(
            [w.record_many for w in self._record_writers],
            max_batch=max_batch,
            name="push-outcomes",
        )

    def claim(self, entry: PushLogEntry) -> ClaimGrant:
        """Claim the PENDING ``entry`` the quick way (see ``ClaimRequest``); committed."""
        return self._claims.call(ClaimRequest(entry))

    def record(
        self,
        entry: PushLogEntry,
        outcome: AttemptOutcome,
        events: Sequence[OutboxEvent],
        now: datetime,
    ) -> bool:
        """Record ``outcome`` of the claimed ``entry`` with ``events``; False if superseded."""
        encoder = self._encoder
        encoded = [
            e if e.value is not None or encoder is None else replace(e, value=encoder(e))
            for e in events
        ]
        return self._outcomes.call(
            OutcomeWrite(
                entry_id=entry.id,
                status=outcome.status,
                now=now,
                response_json=outcome.response_json,
                error_message=outcome.error_message,
                latency_ms=outcome.latency_ms,
                events=encoded,
            )
        )

    def close(self) -> None:
        """Write what is queued, stop the committer threads and close the connections."""
        self._claims.close()
        self._outcomes.close()
        for writer in (*self._claim_writers, *self._record_writers):
            writer.close()
