"""PushHandler over the in-memory fakes: outcomes, dedupe, retries, DLQ, deferral, claims.

The handler reads records through the real codec adapter (Kafka headers, Avro),
wired here as the composition root wires it, so the bytes the tests build are
the bytes the worker consumes.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.avro.codec import decode_push_requested, encode_push_requested
from adapters.avro.outbox_values import outbox_value_encoder
from adapters.avro.records import push_requested_from_outbox, push_requested_record
from adapters.kafka.consumer import ConsumedMessage
from adapters.kafka.headers import EventHeaders, build_headers
from adapters.kafka.record_codec import KafkaAvroRecordCodec
from consumer.push_attempt import NO_ACTIVE_CONNECTION, PushAttempts
from consumer.push_handler import (
    DEFER_AFTER,
    DEFERRED,
    DeadLetter,
    Handled,
    PushHandler,
    RetrySettings,
)
from domain.errors import ConnectorRejectedError, ConnectorTransientError
from domain.events import EVENT_PUSH_DEAD_LETTERED, EVENT_PUSH_RESULT
from domain.idempotency import generate_idempotency_key
from domain.model import DraftOrder, OrderLine, PushStatus
from domain.ports import ExportResult
from domain.records import ConnectionRecord, OutboxEvent, PushLogEntry
from producer.push_again import PushAgainOutcome, push_again
from tests.fakes import (
    FakeCipher,
    FakeClock,
    FakeConnector,
    FakeDatabase,
    FakeRegistry,
    FakeUnitOfWork,
    succeed,
)
from tests.push_log_fakes import FakePushLogWriter

SECRET = "s3cr3t-Pa55w0rd-XYZ"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
LEASE = 60.0


def encode_retry_value(event: OutboxEvent) -> bytes:
    """The Kafka value of a retry-tier outbox event (the writers' one encoder)."""
    value = outbox_value_encoder()(event)
    assert value is not None
    return value


def make_order(org: uuid.UUID) -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=f"SO-{uuid.uuid4().hex[:6]}",
        customer_code="C-1",
        lines=(OrderLine(1, "SKU-1", Decimal("2"), Decimal("9.99")),),
    )


@dataclass
class Env:
    """One fake database, clock, connector and a handler over them."""

    settings: RetrySettings = field(default_factory=RetrySettings)
    db: FakeDatabase = field(default_factory=FakeDatabase)
    clock: FakeClock = field(default_factory=FakeClock)
    connector: FakeConnector = field(default_factory=FakeConnector)
    offsets: int = 0

    def __post_init__(self) -> None:
        #: Every writer the handler's attempts wrote through (one per ``attempts()``).
        self.writers: list[FakePushLogWriter] = []
        self.handler = PushHandler(
            self.attempts, self.settings, codec=KafkaAvroRecordCodec(), clock=self.clock
        )

    def attempts(self) -> PushAttempts:
        uow = FakeUnitOfWork(self.db, known_types=frozenset({"MOCK"}))
        registry = FakeRegistry({"MOCK": self.connector})
        writer = FakePushLogWriter(FakeUnitOfWork(self.db, known_types=frozenset({"MOCK"})))
        self.writers.append(writer)
        return PushAttempts(
            uow,
            registry,
            FakeCipher(),
            writer=writer,
            clock=self.clock,
            monotonic=self.clock.monotonic,
            lease_seconds=LEASE,
        )

    def connect(self, org: uuid.UUID, config: dict[str, Any] | None = None) -> None:
        blob = FakeCipher().encrypt_config(
            config or {"host": "erp", "password": SECRET}, org_id=org, connector_type="MOCK"
        )
        record = ConnectionRecord.new(org, "MOCK", blob, now=self.clock())
        self.db.connections[record.id] = record

    def request(self, order: DraftOrder, event_id: uuid.UUID | None = None) -> ConsumedMessage:
        """A new PushRequested event (attempt 0) as read from the requests topic."""
        now = self.clock()
        event_id = event_id or uuid.uuid4()
        key = generate_idempotency_key(order.org_id, order.id, 0)
        value = encode_push_requested(
            push_requested_record(
                order,
                event_id=event_id,
                idempotency_key=key,
                attempt=0,
                occurred_at=now,
                approved_at=now,
            )
        )
        headers = EventHeaders(
            event_id=event_id,
            event_type="PushRequested",
            idempotency_key=key,
            org_id=order.org_id,
            attempt=0,
            occurred_at=now,
            traceparent=TRACEPARENT,
        )
        return self._message("requests", value, tuple(build_headers(headers)), str(order.id))

    def from_outbox(self, event: OutboxEvent) -> ConsumedMessage:
        """What the worker consumes once the relay published a retry-tier outbox event."""
        items = tuple((k, v.encode()) for k, v in event.headers.items())
        topic = "retry." + event.event_type.rsplit(".", 1)[1]
        return self._message(topic, encode_retry_value(event), items, str(event.aggregate_id))

    def _message(
        self, topic: str, value: bytes, items: tuple[tuple[str, bytes], ...], key: str
    ) -> ConsumedMessage:
        self.offsets += 1
        return ConsumedMessage(
            topic, 0, self.offsets, key.encode(), value, dict(items), None, items
        )

    def handle(self, message: ConsumedMessage) -> str:
        result = self.handler.handle(message)
        assert isinstance(result, Handled), result
        return result.what

    def log(self, order: DraftOrder) -> list[PushLogEntry]:
        return sorted(
            (e for e in self.db.push_log.values() if e.draft_order_id == order.id),
            key=lambda e: e.attempt,
        )

    def outbox(self, order: DraftOrder | None = None) -> list[OutboxEvent]:
        return [e for e in self.db.outbox if order is None or e.aggregate_id == order.id]

    def calls(self, order: DraftOrder) -> int:
        return sum(1 for called, _ in self.connector.calls if called.id == order.id)


def transient(message: str = "ERP busy") -> Any:
    def handler(order: DraftOrder, config: Any) -> ExportResult:
        raise ConnectorTransientError(message)

    return handler


def fail_times(times: int) -> Any:
    seen: dict[uuid.UUID, int] = {}

    def handler(order: DraftOrder, config: Any) -> ExportResult:
        seen[order.id] = seen.get(order.id, 0) + 1
        if seen[order.id] <= times:
            raise ConnectorTransientError("ERP busy")
        return succeed(order, config)

    return handler


def due_at(event: OutboxEvent) -> datetime:
    return datetime.fromisoformat(event.headers["due_at"])


# --- outcomes ----------------------------------------------------------------------------


def test_success_records_push_log_and_one_result_event() -> None:
    env = Env()
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    assert env.handle(env.request(order)) == "SUCCESS"
    assert [(e.attempt, e.status) for e in env.log(order)] == [(0, PushStatus.SUCCESS)]
    [event] = env.outbox()
    assert event.event_type == EVENT_PUSH_RESULT
    assert event.payload["status"] == "SUCCESS"
    assert event.headers["idempotency_key"] == generate_idempotency_key(org, order.id, 0)
    assert env.calls(order) == 1


def test_a_new_order_costs_one_claim_and_one_outcome_statement() -> None:
    env = Env()
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    commits = env.db.commits
    assert env.handle(env.request(order)) == "SUCCESS"
    assert sum(w.calls for w in env.writers) == 2
    assert env.db.commits == commits + 2  # the writer's two transactions, nothing else
    [entry] = env.log(order)
    assert entry.connector_type == "MOCK"
    assert entry.lease_expires_at is None
    # A second event of the order: the quick claim refuses, the full logic says duplicate.
    assert env.handle(env.request(order)) == "duplicate"
    assert env.calls(order) == 1


def test_duplicate_after_success_does_not_export_again() -> None:
    env = Env()
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    message = env.request(order)
    assert env.handle(message) == "SUCCESS"
    assert env.handle(message) == "duplicate"
    assert env.handle(env.request(order)) == "duplicate"  # another event of the same order
    assert env.calls(order) == 1
    assert len(env.outbox()) == 1


def test_transient_error_writes_the_next_attempt_to_the_next_tier_when_due() -> None:
    env = Env(RetrySettings(max_retries=3, retry_delay_base=1.0, retry_tiers=3))
    env.connector.handler = transient()
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    assert env.handle(env.request(order)) == "RETRYING"
    [retry] = env.outbox()
    assert retry.event_type == "PushRetry.1"
    assert retry.headers["attempt"] == "1"
    assert retry.headers["idempotency_key"] == generate_idempotency_key(org, order.id, 1)
    assert retry.headers["error_class"] == "ConnectorTransientError"
    assert retry.headers["original_topic"] == "requests"
    assert due_at(retry) == env.clock() + timedelta(seconds=1)
    assert retry.payload["attempt"] == 1

    env.clock.advance(1.0)
    assert env.handle(env.from_outbox(retry)) == "RETRYING"
    second = env.outbox()[-1]
    assert second.event_type == "PushRetry.2"
    assert second.headers["attempt"] == "2"
    assert due_at(second) == env.clock() + timedelta(seconds=2)  # base * 2^1
    assert second.headers["first_failure_at"] == retry.headers["first_failure_at"]
    assert [(e.attempt, e.status) for e in env.log(order)] == [
        (0, PushStatus.RETRYING),
        (1, PushStatus.RETRYING),
    ]


def test_permanent_error_ends_failed_with_a_dead_letter_of_the_request() -> None:
    env = Env()

    def reject(order: DraftOrder, config: Any) -> ExportResult:
        raise ConnectorRejectedError("ERP says no")

    env.connector.handler = reject
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    message = env.request(order)
    assert env.handle(message) == "FAILED"
    result, dead = env.outbox()
    assert result.event_type == EVENT_PUSH_RESULT
    assert result.payload["status"] == "FAILED"
    assert result.payload["error_class"] == "ConnectorRejectedError"
    assert dead.event_type == EVENT_PUSH_DEAD_LETTERED
    assert base64.b64decode(dead.payload["value_base64"]) == message.value
    assert dead.headers["error_class"] == "ConnectorRejectedError"
    assert [e.status for e in env.log(order)] == [PushStatus.FAILED]


def test_exhausted_retries_end_failed_with_a_dead_letter() -> None:
    env = Env(RetrySettings(max_retries=1, retry_delay_base=0.5, retry_tiers=3))
    env.connector.handler = transient()
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    assert env.handle(env.request(order)) == "RETRYING"
    env.clock.advance(0.5)
    assert env.handle(env.from_outbox(env.outbox()[-1])) == "FAILED"
    types = [e.event_type for e in env.outbox()]
    assert types == ["PushRetry.1", EVENT_PUSH_RESULT, EVENT_PUSH_DEAD_LETTERED]
    result = env.outbox()[1]
    assert result.payload["attempt"] == 1
    assert "gave up after 2 attempts" in result.payload["error_message"]
    assert [(e.attempt, e.status) for e in env.log(order)] == [
        (0, PushStatus.RETRYING),
        (1, PushStatus.FAILED),
    ]
    assert env.calls(order) == 2


def test_no_active_connection_fails_permanently_without_calling_an_erp() -> None:
    env = Env()
    order = make_order(uuid.uuid4())
    assert env.handle(env.request(order)) == "FAILED"
    result, dead = env.outbox()
    assert result.payload["error_class"] == NO_ACTIVE_CONNECTION
    assert dead.event_type == EVENT_PUSH_DEAD_LETTERED
    assert env.connector.calls == []


def test_secrets_never_reach_outbox_payloads_headers_or_the_push_log() -> None:
    env = Env(RetrySettings(max_retries=1, retry_delay_base=1.0, retry_tiers=1))
    env.connector.handler = transient(f"login with password {SECRET} refused")
    org = uuid.uuid4()
    env.connect(org, {"host": "erp", "password": SECRET, "api_token": SECRET + "-2"})
    order = make_order(org)
    assert env.handle(env.request(order)) == "RETRYING"
    env.clock.advance(1.0)
    assert env.handle(env.from_outbox(env.outbox()[-1])) == "FAILED"
    assert len(env.outbox()) == 3
    for event in env.outbox():
        text = json.dumps([event.payload, event.headers])
        assert SECRET not in text
        if event.event_type.startswith("PushRetry."):
            assert SECRET not in repr(decode_push_requested(encode_retry_value(event)))
    for entry in env.log(order):
        assert SECRET not in repr(entry)
        assert SECRET not in json.dumps([entry.request_json, entry.response_json])
        assert SECRET not in (entry.error_message or "")
    assert "refused" in (env.log(order)[0].error_message or "")  # the rest of the text stays


# --- later events of an order in retry wait ------------------------------------------------


def test_new_event_of_an_order_in_retry_is_deferred_behind_the_retry() -> None:
    env = Env(RetrySettings(max_retries=3, retry_delay_base=1.0, retry_tiers=3))
    env.connector.handler = fail_times(1)
    org = uuid.uuid4()
    env.connect(org)
    order, other = make_order(org), make_order(org)
    assert env.handle(env.request(order)) == "RETRYING"
    [retry] = env.outbox(order)

    second_id = uuid.uuid4()
    env.clock.advance(0.2)
    assert env.handle(env.request(order, second_id)) == "deferred"
    assert env.calls(order) == 1  # not exported while the chain is in retry
    deferred = env.outbox(order)[-1]
    assert deferred.id is not None and retry.id is not None and deferred.id > retry.id
    assert deferred.event_type == retry.event_type == "PushRetry.1"  # same tier, queued behind
    assert deferred.event_id != second_id  # the outbox row has its own id ...
    assert deferred.headers["event_id"] == str(second_id)  # ... the message keeps the event's
    assert deferred.headers["attempt"] == "0"
    assert deferred.headers["error_class"] == DEFERRED
    assert due_at(deferred) == due_at(retry) + DEFER_AFTER
    assert deferred.payload["event_id"] == str(second_id)

    # Other orders are not held back.
    assert env.handle(env.request(other)) == "RETRYING"  # fail_times counts per order
    env.clock.advance(1.0)
    assert env.handle(env.from_outbox(retry)) == "SUCCESS"
    assert env.handle(env.from_outbox(deferred)) == "duplicate"  # exactly once per order
    assert env.calls(order) == 2


def test_deferred_event_queues_again_behind_the_next_retry() -> None:
    env = Env(RetrySettings(max_retries=3, retry_delay_base=1.0, retry_tiers=3))
    env.connector.handler = fail_times(2)
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    assert env.handle(env.request(order)) == "RETRYING"
    retry1 = env.outbox()[-1]
    assert env.handle(env.request(order)) == "deferred"
    deferred = env.outbox()[-1]
    env.clock.advance(1.0)
    assert env.handle(env.from_outbox(retry1)) == "RETRYING"
    retry2 = env.outbox()[-1]
    assert retry2.event_type == "PushRetry.2"
    assert env.handle(env.from_outbox(deferred)) == "deferred"
    again = env.outbox()[-1]
    assert again.event_type == "PushRetry.2"
    assert due_at(again) == due_at(retry2) + DEFER_AFTER
    assert again.headers["event_id"] == deferred.headers["event_id"]
    assert again.headers["first_failure_at"] == deferred.headers["first_failure_at"]
    env.clock.advance(2.0)
    assert env.handle(env.from_outbox(retry2)) == "SUCCESS"
    assert env.handle(env.from_outbox(again)) == "duplicate"
    assert env.calls(order) == 3


def test_new_event_after_the_chain_failed_is_a_duplicate_not_deferred() -> None:
    env = Env(RetrySettings(max_retries=1, retry_delay_base=1.0, retry_tiers=1))
    env.connector.handler = transient()
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    assert env.handle(env.request(order)) == "RETRYING"
    env.clock.advance(1.0)
    assert env.handle(env.from_outbox(env.outbox()[-1])) == "FAILED"
    assert env.handle(env.request(order)) == "duplicate"  # FAILED is final for the chain's keys
    assert env.calls(order) == 2


def test_retry_chain_nobody_drives_any_more_does_not_defer_forever() -> None:
    env = Env(RetrySettings(max_retries=3, retry_delay_base=1.0, retry_tiers=3))
    env.connector.handler = transient()
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    assert env.handle(env.request(order)) == "RETRYING"
    env.clock.advance(1.0 + LEASE + 1.0)  # the retry is overdue by more than a lease
    assert env.handle(env.request(order)) == "duplicate"
    assert env.calls(order) == 1


def test_running_retry_attempt_defers_a_new_event() -> None:
    env = Env(RetrySettings(max_retries=3, retry_delay_base=1.0, retry_tiers=3))
    env.connector.handler = transient()
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    assert env.handle(env.request(order)) == "RETRYING"
    env.clock.advance(1.0)
    _, claim = env.attempts().acquire(org, order, 1)  # another worker runs attempt 1
    assert claim is not None
    assert env.handle(env.request(order)) == "deferred"
    deferred = env.outbox()[-1]
    assert deferred.event_type == "PushRetry.1"
    assert due_at(deferred) == env.clock() + timedelta(seconds=1) + DEFER_AFTER


# --- claims held by someone else ----------------------------------------------------------


def test_stale_pending_claim_is_taken_over_and_the_push_completed() -> None:
    env = Env()
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    _, claim = env.attempts().acquire(org, order, 0)  # a worker claimed it, then crashed
    assert claim is not None
    env.clock.advance(LEASE + 1)
    assert env.handle(env.request(order)) == "SUCCESS"  # redelivery takes over
    assert [(e.attempt, e.status) for e in env.log(order)] == [(0, PushStatus.SUCCESS)]
    assert env.calls(order) == 1
    assert [e.event_type for e in env.outbox()] == [EVENT_PUSH_RESULT]


def test_live_claim_of_another_worker_is_deferred_and_rechecked() -> None:
    env = Env(RetrySettings(max_retries=3, retry_delay_base=1.0, retry_tiers=3))
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    _, claim = env.attempts().acquire(org, order, 0)  # another worker holds it
    assert claim is not None
    message = env.request(order)
    assert env.handle(message) == "deferred"
    assert env.connector.calls == []
    deferred = env.outbox()[-1]
    assert deferred.event_type == "PushRetry.1"
    assert deferred.headers["error_class"] == DEFERRED
    assert due_at(deferred) == env.clock() + timedelta(seconds=1)  # before the lease ends

    # Still held when re-examined: deferred again. Then the holder dies: taken over.
    env.clock.advance(1.0)
    assert env.handle(env.from_outbox(deferred)) == "deferred"
    again = env.outbox()[-1]
    env.clock.advance(LEASE)
    assert env.handle(env.from_outbox(again)) == "SUCCESS"
    assert env.calls(order) == 1


def test_live_claim_that_finishes_makes_the_deferred_request_a_duplicate() -> None:
    env = Env()
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    attempts = env.attempts()
    _, claim = attempts.acquire(org, order, 0)
    assert claim is not None
    assert env.handle(env.request(order)) == "deferred"
    with attempts.uow as uow:
        uow.push_log.update_outcome(claim.entry.id, status=PushStatus.SUCCESS, now=env.clock())
        uow.commit()
    assert env.handle(env.from_outbox(env.outbox()[-1])) == "duplicate"
    assert env.connector.calls == []


def test_without_retry_tiers_a_live_claim_stays_a_duplicate() -> None:
    env = Env(RetrySettings(max_retries=0, retry_delay_base=1.0, retry_tiers=0))
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    _, claim = env.attempts().acquire(org, order, 0)
    assert claim is not None
    assert env.handle(env.request(order)) == "duplicate"
    assert env.outbox() == []


# --- the retry schedule, as a property ---------------------------------------------------


@settings(max_examples=40)
@given(
    max_retries=st.integers(0, 6),
    tiers=st.integers(1, 4),
    base=st.sampled_from([0.0, 0.05, 0.5, 1.0, 2.5]),
)
def test_retry_chain_follows_base_times_two_to_the_n_capped_by_the_tiers(
    max_retries: int, tiers: int, base: float
) -> None:
    """Always transient: delays base*2^n (monotonic), tier min(n, tiers), then FAILED + DLQ."""
    env = Env(RetrySettings(max_retries=max_retries, retry_delay_base=base, retry_tiers=tiers))
    env.connector.handler = transient()
    org = uuid.uuid4()
    env.connect(org)
    order = make_order(org)
    message = env.request(order)
    delays: list[float] = []
    for attempt in range(max_retries):
        assert env.handle(message) == "RETRYING"
        retry = env.outbox(order)[-1]
        assert retry.event_type == f"PushRetry.{min(attempt + 1, tiers)}"
        assert int(retry.headers["attempt"]) == attempt + 1
        delays.append((due_at(retry) - env.clock()).total_seconds())
        env.clock.advance(delays[-1])
        message = env.from_outbox(retry)
    assert env.handle(message) == "FAILED"
    assert delays == [base * 2**n for n in range(max_retries)]
    assert delays == sorted(delays)
    assert env.calls(order) == max_retries + 1
    assert [e.status for e in env.log(order)] == [PushStatus.RETRYING] * max_retries + [
        PushStatus.FAILED
    ]
    assert env.outbox(order)[-1].event_type == EVENT_PUSH_DEAD_LETTERED


def test_one_thread_decrypts_a_connection_config_once_and_again_when_it_changes() -> None:
    class CountingCipher(FakeCipher):
        decrypted = 0

        def decrypt_config(self, blob: bytes, /, **bound: Any) -> dict[str, Any]:
            CountingCipher.decrypted += 1
            return super().decrypt_config(blob, **bound)

    env = Env()
    org = uuid.uuid4()
    env.connect(org)
    attempts = env.attempts()
    attempts.cipher = CountingCipher()
    for _ in range(3):
        assert env.handler.handle(env.request(make_order(org)), attempts) == Handled("SUCCESS")
    assert CountingCipher.decrypted == 1
    assert len(env.connector.calls) == 3
    env.db.connections.clear()
    env.connect(org, {"host": "erp2", "password": SECRET})  # a new ciphertext
    assert env.handler.handle(env.request(make_order(org)), attempts) == Handled("SUCCESS")
    assert CountingCipher.decrypted == 2
    assert env.connector.calls[-1][1]["host"] == "erp2"
    assert SECRET not in repr(attempts)


# --- push rounds: a FAILED order pushed again ----------------------------------------------


def _pushed_request(env: Env, event: OutboxEvent) -> ConsumedMessage:
    """What the worker consumes once the relay published a PushRequested outbox event."""
    items = tuple((k, v.encode()) for k, v in event.headers.items())
    value = encode_push_requested(push_requested_from_outbox(event))
    return env._message("requests", value, items, str(event.aggregate_id))


def _rounds(env: Env, order: DraftOrder) -> list[tuple[int, int, PushStatus]]:
    entries = sorted(env.log(order), key=lambda e: (e.push_round, e.attempt))
    return [(e.push_round, e.attempt, e.status) for e in entries]


def _push_again(env: Env, order: DraftOrder) -> PushAgainOutcome:
    return push_again(FakeUnitOfWork(env.db), order.org_id, order.id, clock=env.clock)


def test_a_failed_order_pushed_again_runs_a_new_round_and_exports_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = Env()
    order = make_order(uuid.uuid4())
    first = env.request(order)
    assert env.handle(first) == "FAILED"  # no connection yet
    env.connect(order.org_id)
    with caplog.at_level(logging.INFO, logger="orderflow.consumer"):
        assert env.handle(first) == "duplicate"  # a plain republish does nothing...
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "orderflow orders retry" in warning.getMessage()  # ...and says what does
    assert env.calls(order) == 0

    outcome = _push_again(env, order)
    assert outcome.pushed_again and outcome.push_round == 1
    failed_key = generate_idempotency_key(order.org_id, order.id, 0)
    assert outcome.previous_idempotency_key == failed_key
    assert outcome.event is not None
    assert env.handle(_pushed_request(env, outcome.event)) == "SUCCESS"
    assert _rounds(env, order) == [(0, 0, PushStatus.FAILED), (1, 0, PushStatus.SUCCESS)]
    [again] = [e for e in env.log(order) if e.push_round == 1]
    assert again.idempotency_key == generate_idempotency_key(
        order.org_id, order.id, 0, push_round=1
    )
    assert (again.previous_idempotency_key, again.connector_type) == (failed_key, "MOCK")
    result = env.outbox()[-1]
    assert result.event_type == EVENT_PUSH_RESULT and result.payload["status"] == "SUCCESS"
    assert result.payload["idempotency_key"] == again.idempotency_key
    assert result.headers["idempotency_key"] == again.idempotency_key

    # Exactly one ERP effect, whatever arrives or is asked for afterwards.
    assert env.handle(_pushed_request(env, outcome.event)) == "duplicate"
    assert env.handle(first) == "duplicate"
    assert _push_again(env, order).code == "already_pushed"
    assert env.calls(order) == 1


def test_retries_of_a_later_round_keep_the_round_in_their_keys() -> None:
    env = Env(RetrySettings(max_retries=2, retry_delay_base=1.0, retry_tiers=3))
    order = make_order(uuid.uuid4())
    assert env.handle(env.request(order)) == "FAILED"
    env.connect(order.org_id)
    env.connector.handler = fail_times(1)
    outcome = _push_again(env, order)
    assert outcome.event is not None
    assert env.handle(_pushed_request(env, outcome.event)) == "RETRYING"
    retry = env.outbox()[-1]
    key = generate_idempotency_key(order.org_id, order.id, 1, push_round=1)
    assert retry.headers["idempotency_key"] == key == retry.payload["idempotency_key"]
    env.clock.advance(1.0)
    assert env.handle(env.from_outbox(retry)) == "SUCCESS"
    assert _rounds(env, order) == [
        (0, 0, PushStatus.FAILED),
        (1, 0, PushStatus.RETRYING),
        (1, 1, PushStatus.SUCCESS),
    ]
    assert env.outbox()[-1].payload["idempotency_key"] == key


def test_a_round_that_fails_again_can_be_pushed_again_once_more() -> None:
    env = Env()
    order = make_order(uuid.uuid4())
    assert env.handle(env.request(order)) == "FAILED"
    first = _push_again(env, order)
    assert first.event is not None
    assert env.handle(_pushed_request(env, first.event)) == "FAILED"  # still no connection
    result, dead = env.outbox()[-2:]
    round_key = generate_idempotency_key(order.org_id, order.id, 0, push_round=1)
    assert result.payload["idempotency_key"] == round_key
    assert dead.event_type == EVENT_PUSH_DEAD_LETTERED
    assert dead.headers["idempotency_key"] == round_key
    env.connect(order.org_id)
    second = _push_again(env, order)
    assert (second.push_round, second.previous_idempotency_key) == (2, round_key)
    assert second.event is not None
    assert env.handle(_pushed_request(env, second.event)) == "SUCCESS"
    assert env.calls(order) == 1


def test_requests_of_an_older_round_are_duplicates_once_a_newer_round_exists() -> None:
    env = Env(RetrySettings(max_retries=3, retry_delay_base=1.0, retry_tiers=3))
    order = make_order(uuid.uuid4())
    old = env.request(order)
    assert env.handle(old) == "FAILED"
    env.connect(order.org_id)
    env.connector.handler = transient()
    outcome = _push_again(env, order)
    assert outcome.event is not None
    assert env.handle(_pushed_request(env, outcome.event)) == "RETRYING"
    # Round 1 is in retry: round 0's request neither runs nor waits for it.
    assert env.handle(env.request(order)) == "duplicate"
    assert env.handle(old) == "duplicate"
    assert env.calls(order) == 1


def test_a_hand_made_round_request_waits_while_the_order_is_being_pushed() -> None:
    env = Env(RetrySettings(max_retries=3, retry_delay_base=1.0, retry_tiers=3))
    env.connector.handler = transient()
    order = make_order(uuid.uuid4())
    env.connect(order.org_id)
    assert env.handle(env.request(order)) == "RETRYING"
    message = _round_request(env, order, push_round=1)
    assert env.handle(message) == "deferred"
    assert [e.push_round for e in env.log(order)] == [0]
    assert env.calls(order) == 1


def test_a_hand_made_round_request_after_a_failure_is_linked_to_it() -> None:
    env = Env()
    order = make_order(uuid.uuid4())
    assert env.handle(env.request(order)) == "FAILED"
    env.connect(order.org_id)
    assert env.handle(_round_request(env, order, push_round=3)) == "SUCCESS"
    [again] = [e for e in env.log(order) if e.push_round == 3]
    assert again.previous_idempotency_key == generate_idempotency_key(order.org_id, order.id, 0)


def test_a_round_key_naming_another_order_is_dead_lettered() -> None:
    env = Env()
    order = make_order(uuid.uuid4())
    env.connect(order.org_id)
    wrong = generate_idempotency_key(order.org_id, uuid.uuid4(), 0, push_round=1)
    result = env.handler.handle(_round_request(env, order, push_round=1, key=wrong))
    assert isinstance(result, DeadLetter)
    assert "idempotency_key of push round 1" in result.reason
    assert env.log(order) == [] and env.calls(order) == 0


def _round_request(
    env: Env, order: DraftOrder, *, push_round: int, key: str | None = None
) -> ConsumedMessage:
    now = env.clock()
    event_id = uuid.uuid4()
    key = key or generate_idempotency_key(order.org_id, order.id, 0, push_round=push_round)
    value = encode_push_requested(
        push_requested_record(
            order,
            event_id=event_id,
            idempotency_key=key,
            attempt=0,
            occurred_at=now,
            approved_at=now,
        )
    )
    headers = EventHeaders(
        event_id=event_id,
        event_type="PushRequested",
        idempotency_key=key,
        org_id=order.org_id,
        attempt=0,
        occurred_at=now,
        traceparent=TRACEPARENT,
    )
    return env._message("requests", value, tuple(build_headers(headers)), str(order.id))


def test_a_batch_is_claimed_in_one_statement_and_recorded_in_one() -> None:
    env = Env()
    org = uuid.uuid4()
    env.connect(org)
    done, fresh = make_order(org), [make_order(org) for _ in range(4)]
    assert env.handle(env.request(done)) == "SUCCESS"
    attempts = env.attempts()
    writer = env.writers[-1]
    ran: list[int] = []

    def run_concurrently(fn: Any, items: Any) -> list[Any]:
        ran.append(len(items))
        return [fn(item) for item in items]

    batch = [env.request(order) for order in fresh] + [env.request(done)]
    results = env.handler.handle_batch(batch, attempts, run_concurrently)
    assert [r.what for r in results if isinstance(r, Handled)] == ["SUCCESS"] * 4 + ["duplicate"]
    assert writer.calls == 2  # one claim statement, one outcome statement for the batch
    assert ran == [4]  # the four claimed attempts' ERP calls were handed over together
    for order in fresh:
        [entry] = env.log(order)
        assert entry.status is PushStatus.SUCCESS
        assert env.calls(order) == 1
    assert env.calls(done) == 1
