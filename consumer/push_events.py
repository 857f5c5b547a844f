"""The events that answer a push request: results, retries, deferrals and dead letters.

:class:`PushEvents` builds them as domain values - outbox events written in
the transaction of the push log update, and :class:`~consumer.handling.DeadLetter`
values the worker produces straight to the DLQ - and leaves the wire format
(header text, payload records) to the :class:`~domain.messaging.RecordCodec`:

* SUCCESS / FAILED -> a ``PushResult`` event; FAILED adds a ``PushDeadLettered``
  event carrying the request's value unchanged;
* RETRYING -> the request's next attempt on retry tier ``n + 1``
  (``due_at = now + base * 2^n``), same push round, a new key;
* deferral -> the request unchanged (same ``event_id`` in its headers) on a
  retry tier, due at a given time;
* an undecodable record -> a dead letter with its own key, value and headers,
  the failure headers replaced.

Failure headers keep where and when the trouble began across retries
(:meth:`~domain.headers.FailureInfo.repeated`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from consumer.attempt_outcome import AttemptOutcome
from consumer.handling import DEFERRED, DeadLetter, RetrySettings
from domain.events import (
    AGGREGATE_DRAFT_ORDER,
    EVENT_PUSH_DEAD_LETTERED,
    EVENT_PUSH_REQUESTED,
    EVENT_PUSH_RESULT,
    dead_letter_payload,
    retry_event_type,
)
from domain.headers import EventHeaders, FailureInfo
from domain.idempotency import generate_idempotency_key
from domain.ids import new_uuid4
from domain.messaging import InboundMessage, PushRequest, RecordCodec
from domain.model import DraftOrder, PushStatus
from domain.records import OutboxEvent, PushLogEntry
from domain.retry import retry_delay

_log = logging.getLogger("orderflow.consumer")


class PushEvents:
    """Builds the answers to push requests (see the module docstring); thread-safe."""

    def __init__(self, codec: RecordCodec, settings: RetrySettings) -> None:
        self.codec = codec
        self.settings = settings

    def outcome(
        self,
        message: InboundMessage,
        request: PushRequest,
        entry: PushLogEntry,
        outcome: AttemptOutcome,
        now: datetime,
    ) -> list[OutboxEvent]:
        """The outbox events recording ``outcome`` of the claimed attempt ``entry``."""
        if outcome.status is PushStatus.RETRYING:
            return [self._retry(message, request, outcome, now)]
        order, headers, attempt = request.order, request.headers, entry.attempt
        result_id = new_uuid4()
        result = self.codec.result_payload(
            request,
            event_id=result_id,
            status=outcome.status,
            completed_at=now,
            connector_type=entry.connector_type,
            storage_key=outcome.storage_key if outcome.status is PushStatus.SUCCESS else None,
            erp_reference=outcome.erp_reference,
            error_class=outcome.error_class,
            error_message=outcome.error_message,
            latency_ms=outcome.latency_ms,
        )
        result_headers = EventHeaders(
            event_id=result_id,
            event_type=EVENT_PUSH_RESULT,
            idempotency_key=entry.idempotency_key,
            org_id=order.org_id,
            attempt=attempt,
            occurred_at=now,
            traceparent=headers.traceparent,
        )
        events = [self._outbox(order, EVENT_PUSH_RESULT, result, result_headers, now)]
        if outcome.status is PushStatus.FAILED:
            dead_headers = EventHeaders(
                event_id=headers.event_id,
                event_type=EVENT_PUSH_REQUESTED,
                idempotency_key=entry.idempotency_key,
                org_id=order.org_id,
                attempt=attempt,
                occurred_at=headers.occurred_at,
                traceparent=headers.traceparent,
                failure=_failure(message, headers.failure, outcome, now, None),
            )
            events.append(
                self._outbox(
                    order,
                    EVENT_PUSH_DEAD_LETTERED,
                    dead_letter_payload(message.value),
                    dead_headers,
                    now,
                    event_id=new_uuid4(),
                )
            )
        return events

    def deferred(
        self,
        message: InboundMessage,
        request: PushRequest,
        *,
        tier: int,
        due: datetime,
        reason: str,
        now: datetime,
    ) -> OutboxEvent:
        """``request``, unchanged, for retry tier ``tier``, due at ``due``."""
        headers = request.headers
        if headers.failure is not None:
            failure = headers.failure.repeated(
                error_class=DEFERRED, error_message=reason, due_at=due
            )
        else:
            failure = FailureInfo.new(
                original_topic=message.topic,
                original_partition=message.partition,
                original_offset=message.offset,
                error_class=DEFERRED,
                error_message=reason,
                first_failure_at=now,
                due_at=due,
            )
        return self._outbox(
            request.order,
            retry_event_type(tier),
            self.codec.request_payload(request),
            replace(headers, failure=failure),
            now,
            event_id=new_uuid4(),  # the outbox row's own id; the headers keep the event's
        )

    def dead_letter(
        self,
        message: InboundMessage,
        error_class: str,
        reason: str,
        now: datetime,
        previous: FailureInfo | None,
    ) -> DeadLetter:
        """``message`` as it arrived, for the DLQ, saying ``error_class``: ``reason``."""
        if previous is not None:
            failure = previous.repeated(error_class=error_class, error_message=reason, due_at=None)
        else:
            failure = FailureInfo.new(
                original_topic=message.topic,
                original_partition=message.partition,
                original_offset=message.offset,
                error_class=error_class,
                error_message=reason,
                first_failure_at=now,
            )
        _log.warning(
            "Dead-lettering %s[%d]@%d: %s",
            message.topic,
            message.partition,
            message.offset,
            error_class,
        )
        return DeadLetter(
            key=message.key,
            value=message.value,
            headers=self.codec.dead_letter_headers(message, failure),
            reason=failure.error_message,
        )

    def _retry(
        self,
        message: InboundMessage,
        request: PushRequest,
        outcome: AttemptOutcome,
        now: datetime,
    ) -> OutboxEvent:
        order, attempt = request.order, request.attempt
        following = attempt + 1
        due = now + timedelta(seconds=retry_delay(attempt, self.settings.retry_delay_base))
        # The retry stays in the request's push round (its key says which).
        key = generate_idempotency_key(
            order.org_id, order.id, following, push_round=request.push_round
        )
        event_id = new_uuid4()
        payload = self.codec.retry_payload(
            request, event_id=event_id, idempotency_key=key, attempt=following, occurred_at=now
        )
        retry_headers = EventHeaders(
            event_id=event_id,
            event_type=EVENT_PUSH_REQUESTED,
            idempotency_key=key,
            org_id=order.org_id,
            attempt=following,
            occurred_at=now,
            traceparent=request.headers.traceparent,
            failure=_failure(message, request.headers.failure, outcome, now, due),
        )
        tier = self.settings.tier_for(following)
        return self._outbox(order, retry_event_type(tier), payload, retry_headers, now)

    def _outbox(
        self,
        order: DraftOrder,
        event_type: str,
        payload: dict[str, Any],
        headers: EventHeaders,
        now: datetime,
        *,
        event_id: uuid.UUID | None = None,
    ) -> OutboxEvent:
        return OutboxEvent(
            event_id=event_id or headers.event_id,
            aggregate_type=AGGREGATE_DRAFT_ORDER,
            aggregate_id=order.id,
            org_id=order.org_id,
            event_type=event_type,
            payload=payload,
            headers=self.codec.outbox_headers(headers),
            created_at=now,
        )


def _failure(
    message: InboundMessage,
    previous: FailureInfo | None,
    outcome: AttemptOutcome,
    now: datetime,
    due_at: datetime | None,
) -> FailureInfo:
    error_class = outcome.error_class or "PushFailed"
    text = outcome.error_message or outcome.status.value
    if previous is not None:
        return previous.repeated(error_class=error_class, error_message=text, due_at=due_at)
    return FailureInfo.new(
        original_topic=message.topic,
        original_partition=message.partition,
        original_offset=message.offset,
        error_class=error_class,
        error_message=text,
        first_failure_at=now,
        due_at=due_at,
    )
