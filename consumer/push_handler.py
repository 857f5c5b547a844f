"""What the push worker does with a batch of consumed messages (no Kafka client, no wire format).

:meth:`PushHandler.handle_batch` decodes the batch's requests, claims the new
keys of orders without history in ONE statement (the rest go through the full
logic below, one by one: duplicates, deferrals, take-overs), calls the ERP for
every claimed attempt concurrently (through the worker's ``run_concurrently``;
the batch holds one record per key) and records every outcome together with
its outbox events in ONE statement (:class:`~consumer.push_attempt.PushAttempts`
and its :class:`~domain.push_writes.PushLogWriter`):

* SUCCESS -> push log SUCCESS + ``PushResult`` SUCCESS;
* retryable error (see ``consumer.push_attempt``) with attempts left -> push
  log RETRYING + the next attempt for retry tier ``n + 1``
  (``due_at = now + base * 2^n``);
* permanent error or retries exhausted -> push log FAILED + ``PushResult``
  FAILED + a dead letter of the request.

The record's wire format is the :class:`~domain.messaging.RecordCodec`'s: the
handler sees a :class:`~domain.messaging.PushRequest` and builds its answers
with :class:`~consumer.push_events.PushEvents`. A message that cannot be
understood (missing or garbled headers, undecodable, unknown schema, invalid
content: :class:`~domain.messaging.Undecodable`) is returned as a
:class:`DeadLetter` for the worker to produce straight to the DLQ: the
database has nothing to do with it.

**Deferral: later events of a draft order wait while it is in retry.** The
handler never blocks a thread or a partition to wait. When a request of
attempt 0 (a new event, from the requests topic or a deferred one) finds the
order's retry chain unfinished - its latest push-log attempt RETRYING (or a
retry attempt >= 1 PENDING, i.e. running right now) and no SUCCESS/FAILED row
- the handler *defers* it: it writes the request, unchanged (same value, same
``event_id`` and idempotency key in the headers), as an outbox event of its
own transaction, routed to the SAME retry tier as the pending retry with
``due_at`` just after that retry's due time. The pending retry's outbox row
committed before (so the relay publishes it first, with the same key: same
partition), and the worker holds a tier's partition until its head is due,
so the deferred event is consumed after the retry; if the chain is still
unfinished then, it is deferred again behind the next retry. Other keys never
wait longer than their own schedule (the deferred record's due time is the
tier's own). The event is never lost: its offset is stored only after the
deferral committed. A RETRYING row whose retry is overdue by more than a
lease (no worker drives it: e.g. left by a crashed synchronous orchestrator)
does not defer, so nothing loops forever.

Dedupe contract (conservative): idempotency keys are per (org, order, push
round, attempt), so two attempt-0 events of one round share their keys and the
push log cannot tell them apart (it stores no ``event_id``). The ERP effect is
exactly once per (org, draft order): a deferred event that runs after the
chain finished is a duplicate - after SUCCESS (in any round) by the order's
history, after FAILED because FAILED is final for that round's keys. A plain
republish of a FAILED round's request is therefore a duplicate too, logged at
WARNING with the way to push the order again. Deferral guarantees order and no
loss of the event, never a second export.

**Push rounds (pushing a FAILED order again).** ``producer.push_again``
(``orderflow orders retry``, ``orderflow dlq replay``) starts round ``r + 1``
of an order whose latest round FAILED: it writes the round's attempt-0 row
PENDING *without a lease*, linked to round r's last key, and a request whose
``idempotency_key`` carries the round (``domain.idempotency``). The handler
reads the round from the value's key and processes the request like attempt 0
of a fresh chain: :meth:`PushAttempts.acquire` takes the lease-less row,
retries keep the round in their keys, the result and dead letter carry the
round's key. Only the order's latest round counts for deferral; a request of
an older round than the latest is a duplicate; a round request for which no
row was written (made by hand) while the latest round still runs is deferred
(never two chains of one order at once).

**Claims held by someone else.** A PENDING claim whose lease expired (its
holder crashed) is taken over by :meth:`PushAttempts.acquire` on redelivery
and the push completed. A claim under a LIVE lease belongs to a worker that
may still finish it - or may die after we stored our offset, which would
strand the claim with nobody left to redeliver its request. So the request is
not dropped as a duplicate: it is deferred the same way (retry tier 1, due
at ``min(lease expiry, now + base)``) and re-examined then: final -> duplicate,
lease expired -> taken over, still live -> deferred again. With no retry tier
configured (``retry_tiers == 0``) nothing can be deferred and both cases fall
back to "duplicate".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from consumer.attempt_outcome import AttemptOutcome
from consumer.handling import (
    DEFER_AFTER,
    DEFERRED,
    DeadLetter,
    Handled,
    HandleResult,
    RetrySettings,
)
from consumer.push_attempt import AttemptToClaim, Claim, OutcomeToRecord, PushAttempts
from consumer.push_events import PushEvents
from domain.messaging import InboundMessage, PushRequest, RecordCodec, Undecodable
from domain.model import PushStatus
from domain.records import PushLogEntry
from domain.retry import retry_delay

__all__ = [
    "DEFERRED",
    "DEFER_AFTER",
    "DeadLetter",
    "HandleResult",
    "Handled",
    "PushHandler",
    "RetrySettings",
    "RunConcurrently",
    "run_in_turn",
]

X = TypeVar("X")
Y = TypeVar("Y")
#: Runs ``fn`` on each item, concurrently where it can; results in the items' order.
RunConcurrently = Callable[[Callable[[X], Y], Sequence[X]], list[Y]]


def run_in_turn(fn: Callable[[X], Y], items: Sequence[X]) -> list[Y]:
    """A :data:`RunConcurrently` that runs the items one after another (tests, one record)."""
    return [fn(item) for item in items]


_log = logging.getLogger("orderflow.consumer")
#: Level of the one line per push: DEBUG, since at thousands of pushes per second
#: formatting and writing it cost more than the push itself; the push log row and
#: the PushResult event record every outcome anyway. Deferrals, duplicates and
#: dead letters stay at INFO/WARNING.
_PUSH_LOG_LEVEL = logging.DEBUG


@dataclass(frozen=True, slots=True)
class _Call:
    """A claimed attempt of a batch, waiting for its ERP call."""

    index: int
    message: InboundMessage
    request: PushRequest
    claim: Claim


class PushHandler:
    """Handles one consumed request; thread-safe if ``attempts`` builds a unit of work per call.

    ``attempts_factory`` returns a :class:`PushAttempts` (its unit of work is
    used by one thread at a time: the worker builds one per worker thread);
    ``codec`` reads the records and writes the answers' wire format.
    """

    def __init__(
        self,
        attempts_factory: Callable[[], PushAttempts],
        settings: RetrySettings | None = None,
        *,
        codec: RecordCodec,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._factory = attempts_factory
        self.settings = settings or RetrySettings()
        self._codec = codec
        self._events = PushEvents(codec, self.settings)
        self._clock = clock

    def new_attempts(self) -> PushAttempts:
        """A new :class:`PushAttempts` (one per pipeline thread: units of work are not shared)."""
        return self._factory()

    def due_at(self, message: InboundMessage) -> datetime | None:
        """When a retry-tier ``message`` may run (None: now; garbled headers are dead-lettered)."""
        return self._codec.due_at(message)

    def handle(self, message: InboundMessage, attempts: PushAttempts | None = None) -> HandleResult:
        """Process one ``message``: :meth:`handle_batch` of a batch of one."""
        return self.handle_batch([message], attempts)[0]

    def handle_batch(
        self,
        messages: Sequence[InboundMessage],
        attempts: PushAttempts | None = None,
        run_concurrently: RunConcurrently[_Call, AttemptOutcome] = run_in_turn,
    ) -> list[HandleResult]:
        """Process ``messages`` (one per key): per message, :class:`Handled` or a dead letter.

        Nothing of a batch is recorded until every ERP call of it returned: a
        batch that raises (the database is down) is run again by the worker,
        and its claims, already committed, are then found and deferred or
        taken over by the full logic like any redelivered record's.
        """
        attempts = attempts or self._factory()
        now = (self._clock or attempts.clock)()
        results: list[HandleResult | None] = [None] * len(messages)
        requests: list[tuple[int, InboundMessage, PushRequest]] = []
        for index, message in enumerate(messages):
            request = self._codec.decode_request(message)
            if isinstance(request, Undecodable):
                results[index] = self._events.dead_letter(
                    message, request.error_class, request.reason, now, request.failure
                )
            else:
                requests.append((index, message, request))
        # The quick way first: one statement claims every new key of an order without
        # history, the common case; anything else -> the full logic, record by record.
        fresh = attempts.claim_fresh(
            [
                AttemptToClaim(r.org_id, r.order, r.attempt, now, r.push_round)
                for _, _, r in requests
            ]
        )
        calls: list[_Call] = []
        for (index, message, request), claim in zip(requests, fresh, strict=True):
            if claim is None:
                claimed = self._claim(attempts, message, request, now)
                if isinstance(claimed, Handled):
                    results[index] = claimed
                    continue
                claim = claimed
            calls.append(_Call(index, message, request, claim))
        if calls:
            policy = self.settings.policy

            def call_erp(call: _Call) -> AttemptOutcome:
                return attempts.call_erp(
                    call.claim, call.request.order, call.request.attempt, policy
                )

            runner = run_concurrently if len(calls) > 1 else run_in_turn
            outcomes = runner(call_erp, calls)
            # One time for the events and the rows: a retry is due ``delay`` after the
            # RETRYING row's updated_at, never a few microseconds before it.
            done_at = attempts.clock()
            to_record = [
                OutcomeToRecord(
                    call.claim,
                    outcome,
                    self._events.outcome(
                        call.message, call.request, call.claim.entry, outcome, done_at
                    ),
                    done_at,
                )
                for call, outcome in zip(calls, outcomes, strict=True)
            ]
            recorded = attempts.record_outcomes(to_record)
            for call, outcome, row in zip(calls, outcomes, recorded, strict=True):
                if row is None:
                    # Our lease expired and another worker recorded the attempt first.
                    results[call.index] = Handled("superseded")
                    continue
                key = call.claim.entry.idempotency_key
                _log.log(_PUSH_LOG_LEVEL, "Push %s: %s", key, outcome.status.value)
                results[call.index] = Handled(outcome.status.value)
        done = [r for r in results if r is not None]
        assert len(done) == len(messages)
        return done

    def _claim(
        self,
        attempts: PushAttempts,
        message: InboundMessage,
        request: PushRequest,
        now: datetime,
    ) -> Claim | Handled:
        """The full logic: duplicate, deferral, claim or take-over (several statements)."""
        org, order = request.org_id, request.order
        push_round, attempt = request.push_round, request.attempt
        with attempts.uow as uow:
            # The order's whole history (a handful of rows): its SUCCESS if any, its
            # latest push round, and whether that round's retry chain is unfinished.
            history = uow.push_log.list_for_order(org, order.id)
        done = next((e for e in history if e.status is PushStatus.SUCCESS), None)
        if done is not None:
            _log.info("Draft order %s already pushed: duplicate ignored", order.id)
            return Handled("duplicate")
        latest_round = max((e.push_round for e in history), default=0)
        if latest_round > push_round:
            _log.info(
                "Draft order %s was pushed again in round %d: this round-%d request is a duplicate",
                order.id,
                latest_round,
                push_round,
            )
            return Handled("duplicate")
        chain = [e for e in history if e.push_round == latest_round]
        pending = self._pending_retry(chain if attempt == 0 else (), now, attempts.lease)
        if pending is not None:
            tier, due = pending
            reason = f"Draft order {order.id} is in retry: this event waits for the retry chain"
            return self._defer(attempts, message, request, tier, due, reason)
        previous = None
        if push_round > latest_round and chain:
            # A round-r request whose row push_again did not write (e.g. made by hand).
            last = max(chain, key=lambda e: e.attempt)
            if not last.is_final:
                # Never two chains of one order at once: look again once it had time.
                if self.settings.retry_tiers < 1:
                    _log.info("Draft order %s is being pushed: duplicate ignored", order.id)
                    return Handled("duplicate")
                due = now + timedelta(seconds=self.settings.retry_delay_base)
                reason = f"Draft order {order.id} is being pushed in round {latest_round}"
                tier = self.settings.tier_for(max(1, attempt))
                return self._defer(attempts, message, request, tier, due, reason)
            # Link it to the last key of the round before, as push_again does.
            previous = last.idempotency_key if attempt == 0 else None
        entry, claim = attempts.acquire(
            org, order, attempt, push_round=push_round, previous_idempotency_key=previous
        )
        if claim is None and entry.status is PushStatus.PENDING and self.settings.retry_tiers > 0:
            # A live lease: its holder may finish it, or die after we moved on.
            base = timedelta(seconds=self.settings.retry_delay_base)
            due = min(entry.lease_expires_at or now, now + base)
            reason = f"Attempt {entry.idempotency_key} is claimed by another worker"
            tier = self.settings.tier_for(max(1, attempt))
            return self._defer(attempts, message, request, tier, due, reason)
        if claim is None and entry.status is PushStatus.FAILED:
            # A plain republish of a FAILED round's request: its keys stay final.
            _log.warning(
                "Attempt %s already FAILED: duplicate ignored. To push draft order %s again "
                "once the cause is fixed: orderflow orders retry --org %s --order %s "
                "(or orderflow dlq replay of its dead letter)",
                entry.idempotency_key,
                order.id,
                org,
                order.id,
            )
            return Handled("duplicate")
        if claim is None:
            _log.info(
                "Attempt %s already %s: duplicate ignored",
                entry.idempotency_key,
                entry.status.value,
            )
            return Handled("duplicate")
        return claim

    # --- deferral -------------------------------------------------------------------------
    def _pending_retry(
        self, history: Sequence[PushLogEntry], now: datetime, lease: timedelta
    ) -> tuple[int, datetime] | None:
        """``(tier, due_at)`` for a new event of an order whose retry chain is unfinished."""
        if not history or self.settings.retry_tiers < 1:
            return None
        if any(entry.is_final for entry in history):
            return None
        latest = max(history, key=lambda e: e.attempt)
        if latest.status is PushStatus.RETRYING:
            delay = retry_delay(latest.attempt, self.settings.retry_delay_base)
            due = latest.retry_due_at(delay)
            tier = self.settings.tier_for(latest.attempt + 1)
            reference = due
        elif latest.status is PushStatus.PENDING and latest.attempt >= 1:
            # The retry runs right now: look again once it had time to finish.
            due = now + timedelta(seconds=self.settings.retry_delay_base)
            tier = self.settings.tier_for(latest.attempt)
            reference = latest.lease_expires_at
        else:
            return None  # attempt 0 itself is PENDING: acquire() decides (same key)
        if due is None or reference is None or reference + lease < now:
            return None  # nobody drives this chain any more: do not wait for it forever
        return tier, max(due, now) + DEFER_AFTER

    def _defer(
        self,
        attempts: PushAttempts,
        message: InboundMessage,
        request: PushRequest,
        tier: int,
        due: datetime,
        reason: str,
    ) -> Handled:
        """Write the request, unchanged, to retry tier ``tier`` due at ``due`` (own transaction)."""
        event = self._events.deferred(
            message, request, tier=tier, due=due, reason=reason, now=attempts.clock()
        )
        with attempts.uow as uow:
            uow.outbox.add(event)
            uow.commit()
        _log.info(
            "Deferred %s to retry tier %d until %s: %s", request.headers.event_id, tier, due, reason
        )
        return Handled("deferred")
