"""The contract of ``domain.push_writes.PushLogWriter``, for every implementation.

A subclass gives :meth:`PushLogWriterContract.new_world`: a writer whose
outbox encoder is :data:`ENCODED`'s, and a unit of work over the same (empty)
store to set up connections and read back what was written. The in-memory
fake (tests/unit) and the SQL writer on real PostgreSQL, on its own
connection and in a caller's session (tests/integration), all run it.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from domain.model import PushStatus
from domain.push_writes import ClaimRequest, OutcomeWrite, PushLogWriter
from domain.records import AGGREGATE_DRAFT_ORDER, ConnectionRecord, OutboxEvent, PushLogEntry
from domain.repositories import UnitOfWork

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
#: The value every contract writer's encoder gives an event written without one.
ENCODED = b"contract-encoded-value"


def encode(_event: OutboxEvent) -> bytes:
    """The encoder a :meth:`PushLogWriterContract.new_world` writer must be built with."""
    return ENCODED


def pending(
    org: uuid.UUID, order: uuid.UUID, attempt: int = 0, *, push_round: int = 0
) -> PushLogEntry:
    """The PENDING row claiming ``attempt`` of ``order``'s round ``push_round``."""
    return PushLogEntry.pending(
        org_id=org,
        draft_order_id=order,
        idempotency_key=f"{order}-r{push_round}-{attempt}",
        attempt=attempt,
        now=NOW,
        lease_expires_at=NOW + timedelta(minutes=5),
        request_json={"order_number": "SO-1"},
        push_round=push_round,
    )


def an_event(entry: PushLogEntry, value: bytes | None = b"stored-as-given") -> OutboxEvent:
    """An outcome event of ``entry`` (``value=None``: the writer's encoder fills it)."""
    return OutboxEvent(
        event_id=uuid.uuid4(),
        aggregate_type=AGGREGATE_DRAFT_ORDER,
        aggregate_id=entry.draft_order_id,
        org_id=entry.org_id,
        event_type="PushResult",
        payload={"status": "SUCCESS", "text": "caf\u00e9"},
        headers={"event_type": "PushResult"},
        created_at=NOW,
        value=value,
    )


class PushLogWriterContract:
    """Tests every ``PushLogWriter`` must pass (subclass and give ``new_world``)."""

    def new_world(self) -> tuple[PushLogWriter, UnitOfWork]:
        """A writer built with :func:`encode`, and a unit of work over the same store."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------
    def _connect(self, uow: UnitOfWork, org: uuid.UUID, *, active: bool = True) -> ConnectionRecord:
        record = ConnectionRecord.new(org, "MOCK", b"blob", now=NOW)
        with uow:
            uow.connections.add(record)
            if not active:
                uow.connections.disable(record.id, now=NOW)
            uow.commit()
        return record

    def _row(self, uow: UnitOfWork, entry: PushLogEntry) -> PushLogEntry | None:
        with uow:
            return uow.push_log.find(entry.idempotency_key)

    def _event(self, uow: UnitOfWork, event: OutboxEvent) -> OutboxEvent | None:
        with uow:
            return uow.outbox.get(event.event_id)

    def _claimed(self, writer: PushLogWriter, entry: PushLogEntry) -> PushLogEntry:
        [grant] = writer.claim_many([ClaimRequest(entry)])
        assert grant.claimed
        return entry

    # -- claims -----------------------------------------------------------------------
    def test_a_new_key_is_claimed_with_the_organisations_active_connection(self) -> None:
        writer, uow = self.new_world()
        org = uuid.uuid4()
        connection = self._connect(uow, org)
        entry = pending(org, uuid.uuid4())
        [grant] = writer.claim_many([ClaimRequest(entry)])
        assert grant.claimed
        assert grant.connection is not None and grant.connection.id == connection.id
        row = self._row(uow, entry)
        assert row is not None and row.id == entry.id
        assert row.status is PushStatus.PENDING
        assert row.connector_type == "MOCK"
        assert row.lease_expires_at == entry.lease_expires_at

    def test_without_an_active_connection_the_claim_has_none(self) -> None:
        writer, uow = self.new_world()
        org = uuid.uuid4()
        self._connect(uow, org, active=False)
        entry = pending(org, uuid.uuid4())
        [grant] = writer.claim_many([ClaimRequest(entry)])
        assert grant.claimed and grant.connection is None
        row = self._row(uow, entry)
        assert row is not None and row.connector_type is None

    def test_a_key_that_exists_is_never_claimed_again(self) -> None:
        writer, uow = self.new_world()
        org, order = uuid.uuid4(), uuid.uuid4()
        first = self._claimed(writer, pending(org, order))
        for fresh_only in (True, False):
            again = replace(pending(org, order), id=uuid.uuid4())
            [grant] = writer.claim_many([ClaimRequest(again, fresh_only=fresh_only)])
            assert not grant.claimed
        row = self._row(uow, first)
        assert row is not None and row.id == first.id

    def test_fresh_only_claims_leave_orders_with_history_to_the_full_logic(self) -> None:
        writer, uow = self.new_world()
        org, order = uuid.uuid4(), uuid.uuid4()
        self._claimed(writer, pending(org, order, 0, push_round=0))
        # Attempt 0 of a later round: the order has history -> not the quick way.
        next_round = pending(org, order, 0, push_round=1)
        assert not writer.claim_many([ClaimRequest(next_round)])[0].claimed
        assert self._row(uow, next_round) is None
        # A retry (attempt 1) of the order: no SUCCESS, no later round -> claimed.
        retry = pending(org, order, 1)
        assert writer.claim_many([ClaimRequest(retry)])[0].claimed
        # Once the full logic decided, it claims without the history check.
        assert writer.claim_many([ClaimRequest(next_round, fresh_only=False)])[0].claimed
        # A retry of round 0 after round 1 exists is history again.
        stale = pending(org, order, 2, push_round=0)
        assert not writer.claim_many([ClaimRequest(stale)])[0].claimed

    def test_a_retry_of_an_order_that_succeeded_is_not_claimed_the_quick_way(self) -> None:
        writer, uow = self.new_world()
        org, order = uuid.uuid4(), uuid.uuid4()
        done = self._claimed(writer, pending(org, order, 0))
        assert writer.record_many([OutcomeWrite(done.id, PushStatus.SUCCESS, NOW)]) == [True]
        retry = pending(org, order, 1)
        assert not writer.claim_many([ClaimRequest(retry)])[0].claimed
        assert self._row(uow, retry) is None

    def test_a_batch_answers_each_request_in_order(self) -> None:
        writer, uow = self.new_world()
        org = uuid.uuid4()
        self._connect(uow, org)
        taken = self._claimed(writer, pending(org, uuid.uuid4()))
        batch = [
            pending(org, uuid.uuid4()),
            replace(pending(org, taken.draft_order_id), id=uuid.uuid4()),
            pending(org, uuid.uuid4()),
        ]
        grants = writer.claim_many([ClaimRequest(e) for e in batch])
        assert [g.claimed for g in grants] == [True, False, True]
        assert grants[1].connection is None

    # -- outcomes ---------------------------------------------------------------------
    def test_an_outcome_is_recorded_with_its_events_in_order(self) -> None:
        writer, uow = self.new_world()
        org = uuid.uuid4()
        entry = self._claimed(writer, pending(org, uuid.uuid4()))
        given, encoded = an_event(entry), an_event(entry, value=None)
        later = NOW + timedelta(seconds=3)
        write = OutcomeWrite(
            entry.id,
            PushStatus.RETRYING,
            later,
            response_json={"erp": "timeout"},
            error_message="the ERP timed out",
            latency_ms=42,
            events=[given, encoded],
        )
        assert writer.record_many([write]) == [True]
        row = self._row(uow, entry)
        assert row is not None
        assert row.status is PushStatus.RETRYING
        assert (row.response_json, row.error_message, row.latency_ms) == (
            {"erp": "timeout"},
            "the ERP timed out",
            42,
        )
        assert row.lease_expires_at is None and row.updated_at == later
        stored_given, stored_encoded = self._event(uow, given), self._event(uow, encoded)
        assert stored_given is not None and stored_encoded is not None
        assert stored_given.value == b"stored-as-given"
        assert stored_encoded.value == ENCODED  # the writer's encoder filled it
        assert stored_given.payload == given.payload
        assert stored_given.id is not None and stored_encoded.id is not None
        assert stored_given.id < stored_encoded.id  # publish order is the order given

    def test_an_outcome_of_a_row_no_longer_pending_is_dropped_with_its_events(self) -> None:
        writer, uow = self.new_world()
        org = uuid.uuid4()
        entry = self._claimed(writer, pending(org, uuid.uuid4()))
        assert writer.record_many([OutcomeWrite(entry.id, PushStatus.SUCCESS, NOW)]) == [True]
        late = an_event(entry)
        write = OutcomeWrite(entry.id, PushStatus.FAILED, NOW, events=[late])
        assert writer.record_many([write]) == [False]
        row = self._row(uow, entry)
        assert row is not None and row.status is PushStatus.SUCCESS
        assert self._event(uow, late) is None

    def test_a_batch_of_outcomes_answers_each_write_in_order(self) -> None:
        writer, uow = self.new_world()
        org = uuid.uuid4()
        first = self._claimed(writer, pending(org, uuid.uuid4()))
        done = self._claimed(writer, pending(org, uuid.uuid4()))
        assert writer.record_many([OutcomeWrite(done.id, PushStatus.SUCCESS, NOW)]) == [True]
        events = [an_event(first), an_event(done)]
        writes = [
            OutcomeWrite(first.id, PushStatus.SUCCESS, NOW, events=[events[0]]),
            OutcomeWrite(done.id, PushStatus.FAILED, NOW, events=[events[1]]),
            OutcomeWrite(uuid.uuid4(), PushStatus.SUCCESS, NOW),  # no such row
        ]
        assert writer.record_many(writes) == [True, False, False]
        assert self._event(uow, events[0]) is not None
        assert self._event(uow, events[1]) is None
