"""One contract suite for the persistence ports, run against the SQL stores on
a real PostgreSQL and against the in-memory fakes unit tests rely on: if the
fakes drift from the real adapter, this suite says so."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from adapters.postgres.engine import make_session_factory
from adapters.postgres.unit_of_work import SqlAlchemyUnitOfWork
from domain.model import ConnectionStatus, DraftOrder, DraftOrderStatus, OrderLine, PushStatus
from domain.records import AGGREGATE_DRAFT_ORDER, ConnectionRecord, OutboxEvent, PushLogEntry
from domain.repositories import DuplicateKeyError, UnitOfWork
from tests.fakes import FakeUnitOfWork

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(params=["fake", "postgres"])
def new_uow(request: pytest.FixtureRequest) -> Iterator[Callable[[], UnitOfWork]]:
    """A factory of units of work over one (empty) database."""
    if request.param == "fake":
        fake = FakeUnitOfWork()
        yield lambda: FakeUnitOfWork(fake.db)
        return
    eng: Engine = request.getfixturevalue("engine")
    factory = make_session_factory(eng)
    yield lambda: SqlAlchemyUnitOfWork(factory)
    with eng.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE erp_connection, erp_push_log, draft_order, outbox_event, outbox_published"
            )
        )


def _connection(org: uuid.UUID, ctype: str = "MOCK") -> ConnectionRecord:
    return ConnectionRecord.new(org, ctype, b"\x00cipher-" + ctype.encode(), now=NOW)


def _pending(
    key: str,
    *,
    org: uuid.UUID | None = None,
    order: uuid.UUID | None = None,
    attempt: int = 0,
    lease_s: float = 60,
    now: datetime = NOW,
) -> PushLogEntry:
    return PushLogEntry.pending(
        org_id=org or uuid.uuid4(),
        draft_order_id=order or uuid.uuid4(),
        idempotency_key=key,
        attempt=attempt,
        now=now,
        lease_expires_at=now + timedelta(seconds=lease_s),
        connector_type="MOCK",
        request_json={"order_number": "SO-1", "lines": [{"quantity": "1.50"}]},
    )


def _order(org: uuid.UUID, number: str = "SO-1") -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=number,
        customer_code="C-1",
        currency="CHF",
        lines=(OrderLine(1, "P", Decimal("1.500"), Decimal("0.05"), "thing", "box"),),
        notes="n",
        extra={"source": "api", "tags": ["a"]},
    )


# -- unit of work ---------------------------------------------------------------


def test_nothing_is_stored_without_commit(new_uow: Callable[[], UnitOfWork]) -> None:
    org = uuid.uuid4()
    with new_uow() as uow:
        uow.connections.add(_connection(org))
    with new_uow() as uow:
        assert uow.connections.get_active(org) is None


def test_an_exception_rolls_back(new_uow: Callable[[], UnitOfWork]) -> None:
    org = uuid.uuid4()
    with pytest.raises(RuntimeError), new_uow() as uow:
        uow.connections.add(_connection(org))
        raise RuntimeError("boom")
    with new_uow() as uow:
        assert uow.connections.list(org) == []


def test_commit_makes_writes_visible_to_the_next_unit(new_uow: Callable[[], UnitOfWork]) -> None:
    org = uuid.uuid4()
    record = _connection(org)
    with new_uow() as uow:
        uow.connections.add(record)
        uow.commit()
    with new_uow() as uow:
        assert uow.connections.get_active(org) == record
        assert uow.connections.get(record.id) == record


# -- connections ------------------------------------------------------------------


def test_second_active_connection_is_a_duplicate(new_uow: Callable[[], UnitOfWork]) -> None:
    org = uuid.uuid4()
    with new_uow() as uow:
        uow.connections.add(_connection(org))
        with pytest.raises(DuplicateKeyError, match="already has an active ERP connection"):
            uow.connections.add(_connection(org, "DROPZONE_JSON_V1"))
        uow.commit()  # the failed add did not spoil the transaction
    with new_uow() as uow:
        assert [c.connector_type for c in uow.connections.list(org)] == ["MOCK"]


def test_replacing_the_active_connection_in_one_unit(new_uow: Callable[[], UnitOfWork]) -> None:
    org = uuid.uuid4()
    old = _connection(org)
    with new_uow() as uow:
        uow.connections.add(old)
        uow.commit()
    new = _connection(org, "DROPZONE_JSON_V1")
    with new_uow() as uow:
        disabled = uow.connections.disable(old.id, now=NOW + timedelta(hours=1))
        assert disabled is not None
        assert disabled.status is ConnectionStatus.DISABLED
        uow.connections.add(new)
        uow.commit()
    with new_uow() as uow:
        active = uow.connections.get_active(org)
        assert active is not None
        assert active.id == new.id
        assert {c.id: c.status for c in uow.connections.list(org)} == {
            old.id: ConnectionStatus.DISABLED,
            new.id: ConnectionStatus.ACTIVE,
        }
        assert uow.connections.disable(uuid.uuid4(), now=NOW) is None


def test_mark_tested_and_list_scoping(new_uow: Callable[[], UnitOfWork]) -> None:
    org, other = uuid.uuid4(), uuid.uuid4()
    mine, theirs = _connection(org), _connection(other)
    with new_uow() as uow:
        uow.connections.add(mine)
        uow.connections.add(theirs)
        uow.connections.mark_tested(mine.id, at=NOW + timedelta(minutes=5))
        uow.commit()
    with new_uow() as uow:
        assert [c.id for c in uow.connections.list(org)] == [mine.id]
        assert {c.id for c in uow.connections.list()} >= {mine.id, theirs.id}
        tested = uow.connections.get(mine.id)
        assert tested is not None
        assert tested.last_test_at == NOW + timedelta(minutes=5)


def test_invalid_connector_type_is_refused(new_uow: Callable[[], UnitOfWork]) -> None:
    with new_uow() as uow, pytest.raises(ValueError, match="Invalid connector_type: BOGUS"):
        uow.connections.add(_connection(uuid.uuid4(), "BOGUS"))


# -- push log ---------------------------------------------------------------------


def test_claim_inserts_once_and_reports_the_loser(new_uow: Callable[[], UnitOfWork]) -> None:
    entry = _pending("k-claim")
    with new_uow() as uow:
        assert uow.push_log.claim(entry) == entry
        assert uow.push_log.claim(_pending("k-claim")) is None
        uow.commit()  # the lost claim left the transaction usable
    with new_uow() as uow:
        assert uow.push_log.find("k-claim") == entry
        assert uow.push_log.get(entry.id) == entry
        assert uow.push_log.claim(_pending("k-claim")) is None
        assert uow.push_log.find("k-other") is None


def test_update_outcome_only_changes_pending_rows(new_uow: Callable[[], UnitOfWork]) -> None:
    entry = _pending("k-outcome")
    later = NOW + timedelta(seconds=3)
    with new_uow() as uow:
        uow.push_log.claim(entry)
        done = uow.push_log.update_outcome(
            entry.id,
            status=PushStatus.SUCCESS,
            now=later,
            response_json={"storage_key": "x", "meta": {"n": 1}},
            latency_ms=42,
        )
        assert done is not None
        assert done.status is PushStatus.SUCCESS
        assert done.response_json == {"storage_key": "x", "meta": {"n": 1}}
        assert (done.latency_ms, done.updated_at, done.lease_expires_at) == (42, later, None)
        assert done.created_at == NOW
        assert done.request_json == entry.request_json
        again = uow.push_log.update_outcome(
            entry.id, status=PushStatus.FAILED, now=later, error_message="late"
        )
        assert again is None
        uow.commit()
    with new_uow() as uow:
        assert uow.push_log.find("k-outcome") == done
        assert uow.push_log.update_outcome(uuid.uuid4(), status=PushStatus.FAILED, now=NOW) is None


def test_take_over_only_after_the_lease_expired(new_uow: Callable[[], UnitOfWork]) -> None:
    with new_uow() as uow:
        uow.push_log.claim(_pending("k-lease", lease_s=30))
        uow.commit()
    with new_uow() as uow:
        assert (
            uow.push_log.take_over(
                "k-lease",
                now=NOW + timedelta(seconds=10),
                lease_expires_at=NOW + timedelta(hours=1),
            )
            is None
        )
        later = NOW + timedelta(seconds=31)
        taken = uow.push_log.take_over(
            "k-lease", now=later, lease_expires_at=later + timedelta(seconds=60)
        )
        assert taken is not None
        assert taken.lease_expires_at == later + timedelta(seconds=60)
        assert taken.status is PushStatus.PENDING
        # The new lease is live: a second taker gets nothing.
        assert (
            uow.push_log.take_over(
                "k-lease", now=later, lease_expires_at=later + timedelta(seconds=60)
            )
            is None
        )
        assert uow.push_log.take_over("k-missing", now=later, lease_expires_at=later) is None
        uow.commit()


def test_take_over_never_touches_finished_rows(new_uow: Callable[[], UnitOfWork]) -> None:
    entry = _pending("k-final", lease_s=1)
    with new_uow() as uow:
        uow.push_log.claim(entry)
        uow.push_log.update_outcome(entry.id, status=PushStatus.RETRYING, now=NOW)
        far = NOW + timedelta(days=1)
        assert uow.push_log.take_over("k-final", now=far, lease_expires_at=far) is None


def test_find_success_and_list_for_order(new_uow: Callable[[], UnitOfWork]) -> None:
    org, order = uuid.uuid4(), uuid.uuid4()
    attempts = [_pending(f"k-{n}", org=org, order=order, attempt=n) for n in (1, 0, 2)]
    with new_uow() as uow:
        for entry in attempts:
            uow.push_log.claim(entry)
        uow.push_log.claim(_pending("k-elsewhere", org=org))
        assert uow.push_log.find_success(org, order) is None
        uow.push_log.update_outcome(attempts[1].id, status=PushStatus.RETRYING, now=NOW)
        uow.push_log.update_outcome(attempts[0].id, status=PushStatus.SUCCESS, now=NOW)
        uow.commit()
    with new_uow() as uow:
        assert [e.attempt for e in uow.push_log.list_for_order(org, order)] == [0, 1, 2]
        success = uow.push_log.find_success(org, order)
        assert success is not None
        assert success.id == attempts[0].id
        assert uow.push_log.find_success(uuid.uuid4(), order) is None


# -- draft orders -----------------------------------------------------------------


def test_draft_order_round_trip_and_org_scoping(new_uow: Callable[[], UnitOfWork]) -> None:
    org = uuid.uuid4()
    order = _order(org)
    with new_uow() as uow:
        uow.draft_orders.add(order, now=NOW)
        uow.commit()
    with new_uow() as uow:
        assert uow.draft_orders.get(org, order.id) == order
        assert uow.draft_orders.get(org, order.id, for_update=True) == order
        assert uow.draft_orders.get(uuid.uuid4(), order.id) is None
        assert uow.draft_orders.get_by_number(org, "SO-1") == order
        assert uow.draft_orders.get_by_number(org, "SO-2") is None


def test_draft_order_duplicates(new_uow: Callable[[], UnitOfWork]) -> None:
    org = uuid.uuid4()
    order = _order(org)
    with new_uow() as uow:
        uow.draft_orders.add(order, now=NOW)
        with pytest.raises(DuplicateKeyError, match="'SO-1' is already used"):
            uow.draft_orders.add(_order(org), now=NOW)
        with pytest.raises(DuplicateKeyError, match="already exists"):
            uow.draft_orders.add(order, now=NOW)
        uow.draft_orders.add(_order(uuid.uuid4()), now=NOW)  # same number, other org
        uow.commit()


def test_draft_order_update(new_uow: Callable[[], UnitOfWork]) -> None:
    org = uuid.uuid4()
    order = _order(org)
    with new_uow() as uow:
        uow.draft_orders.add(order, now=NOW)
        uow.commit()
    approved = DraftOrder(**{**order.__dict__, "status": DraftOrderStatus.APPROVED, "notes": "ok"})
    with new_uow() as uow:
        uow.draft_orders.update(approved, now=NOW + timedelta(minutes=1))
        uow.commit()
    with new_uow() as uow:
        assert uow.draft_orders.get(org, order.id) == approved
        with pytest.raises(KeyError):
            uow.draft_orders.update(_order(org, "SO-404"), now=NOW)


# -- outbox -----------------------------------------------------------------------


def _event(n: int) -> OutboxEvent:
    return OutboxEvent(
        event_id=uuid.uuid4(),
        aggregate_type=AGGREGATE_DRAFT_ORDER,
        aggregate_id=uuid.uuid4(),
        org_id=uuid.uuid4(),
        event_type="PushRequested",
        payload={"n": n, "amount": "1.10"},
        headers={"attempt": "0", "event_type": "PushRequested"},
        created_at=NOW,
    )


def test_outbox_assigns_increasing_ids_and_lists_unpublished(
    new_uow: Callable[[], UnitOfWork],
) -> None:
    events = [_event(n) for n in range(3)]
    with new_uow() as uow:
        stored = [uow.outbox.add(e) for e in events]
        uow.commit()
    ids = [e.id for e in stored if isinstance(e.id, int)]
    assert len(ids) == 3
    assert ids == sorted(ids) and len(set(ids)) == 3
    with new_uow() as uow:
        assert list(uow.outbox.list_unpublished()) == stored
        assert list(uow.outbox.list_unpublished(limit=2)) == stored[:2]
        assert uow.outbox.get(events[1].event_id) == stored[1]
        assert uow.outbox.get(uuid.uuid4()) is None


def test_push_rounds_are_stored_listed_in_order_and_a_requested_round_is_taken(
    new_uow: Callable[[], UnitOfWork],
) -> None:
    org, order = uuid.uuid4(), uuid.uuid4()
    failed = _pending("k-r0-0", org=org, order=order)
    retried = _pending("k-r0-1", org=org, order=order, attempt=1)
    # A push again: round 1, attempt 0, no lease and no connector type yet, linked.
    requested = replace(
        _pending("k-r1-0", org=org, order=order),
        push_round=1,
        previous_idempotency_key="k-r0-1",
        lease_expires_at=None,
        connector_type=None,
    )
    with new_uow() as uow:
        for entry in (requested, retried, failed):
            uow.push_log.claim(entry)
        uow.commit()
    with new_uow() as uow:
        listed = uow.push_log.list_for_order(org, order)
        assert [(e.push_round, e.attempt) for e in listed] == [(0, 0), (0, 1), (1, 0)]
        assert listed[2] == requested
        assert (listed[0].push_round, listed[0].previous_idempotency_key) == (0, None)
        taken = uow.push_log.take_over(
            "k-r1-0", now=NOW, lease_expires_at=NOW + timedelta(seconds=60), connector_type="MOCK"
        )
        assert taken is not None
        assert (taken.connector_type, taken.lease_expires_at) == (
            "MOCK",
            NOW + timedelta(seconds=60),
        )
        assert (taken.push_round, taken.previous_idempotency_key) == (1, "k-r0-1")
