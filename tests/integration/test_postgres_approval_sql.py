"""The one-statement approval (adapters/postgres/approval_sql.py) on real PostgreSQL.

``approve_draft_order`` writes through the unit of work's ``approvals`` port;
every case runs with a unit of work opening its own sessions and with one over a
caller-owned session (the seed's ``PushOrchestrator(db_session)`` style). The
same refusals hold for the in-memory writer: tests/contract/test_approval_writer.py.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.avro.outbox_values import outbox_value_encoder
from adapters.postgres.engine import make_session_factory
from adapters.postgres.models import DraftOrderRow, OutboxEventRow
from adapters.postgres.unit_of_work import SessionUnitOfWork, SqlAlchemyUnitOfWork
from domain.model import DraftOrder, DraftOrderStatus, OrderLine
from domain.repositories import DuplicateKeyError, UnitOfWork
from producer.approval import OrderAlreadyApproved, approve_draft_order

pytestmark = pytest.mark.integration

ORG = uuid.uuid4()
DRAFTED = datetime(2025, 1, 1, tzinfo=UTC)
APPROVED = DRAFTED + timedelta(days=1)


Path = Callable[[sessionmaker[Session]], UnitOfWork]
PATHS: dict[str, Path] = {
    "one-statement": lambda f: SqlAlchemyUnitOfWork(f, outbox_encoder=outbox_value_encoder()),
    "caller-owned session": lambda f: SessionUnitOfWork(f(), outbox_encoder=outbox_value_encoder()),
}


@pytest.fixture
def factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    yield make_session_factory(engine)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE draft_order, outbox_event, outbox_published"))


@pytest.fixture(params=sorted(PATHS))
def new_uow(
    request: pytest.FixtureRequest, factory: sessionmaker[Session]
) -> Callable[[], UnitOfWork]:
    make = PATHS[request.param]
    return lambda: make(factory)


def make_order(number: str = "SO-1", org: uuid.UUID = ORG) -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=number,
        customer_code="C-9",
        currency="CHF",
        lines=(
            OrderLine(1, "P-1", Decimal("4"), Decimal("2.50"), description="bolts"),
            OrderLine(2, "P-2", Decimal("1.250"), Decimal("19.99"), unit="kg"),
        ),
        notes="ring twice",
        extra={"channel": "portal", "tags": ["a", "b"], "n": 3},
    )


def add_draft(factory: sessionmaker[Session], order: DraftOrder) -> None:
    uow = SqlAlchemyUnitOfWork(factory)
    with uow:
        uow.draft_orders.add(order, now=DRAFTED)
        uow.commit()


def stored(factory: sessionmaker[Session], order_id: uuid.UUID) -> DraftOrderRow:
    with factory() as s:
        row = s.get(DraftOrderRow, order_id)
        assert row is not None
        return row


def outbox_rows(factory: sessionmaker[Session]) -> list[OutboxEventRow]:
    with factory() as s:
        return list(s.scalars(select(OutboxEventRow).order_by(OutboxEventRow.id)))


def test_a_new_order_and_its_event_are_stored_in_full(
    factory: sessionmaker[Session], new_uow: Callable[[], UnitOfWork]
) -> None:
    order = make_order()

    event = approve_draft_order(new_uow(), ORG, order, clock=lambda: APPROVED)

    row = stored(factory, order.id)
    assert (row.status, row.created_at, row.updated_at, row.approved_at) == (
        "APPROVED",
        APPROVED,
        APPROVED,
        APPROVED,
    )
    reader = SqlAlchemyUnitOfWork(factory)
    with reader:
        assert reader.draft_orders.get(ORG, order.id) == replace(
            order, status=DraftOrderStatus.APPROVED
        )
        assert reader.outbox.get(event.event_id) == event
    [outbox] = outbox_rows(factory)
    assert outbox.id == event.id and outbox.value == event.value and event.value is not None
    assert outbox.created_at == APPROVED


def test_an_existing_draft_is_overwritten_and_keeps_its_creation_time(
    factory: sessionmaker[Session], new_uow: Callable[[], UnitOfWork]
) -> None:
    order = make_order()
    add_draft(factory, order)
    edited = replace(order, order_number="SO-1b", notes="edited", lines=order.lines[:1])

    approve_draft_order(new_uow(), ORG, edited, clock=lambda: APPROVED)

    row = stored(factory, order.id)
    assert (row.status, row.created_at, row.updated_at, row.approved_at) == (
        "APPROVED",
        DRAFTED,
        APPROVED,
        APPROVED,
    )
    reader = SqlAlchemyUnitOfWork(factory)
    with reader:
        assert reader.draft_orders.get(ORG, order.id) == replace(
            edited, status=DraftOrderStatus.APPROVED
        )
    assert len(outbox_rows(factory)) == 1


def test_a_second_approval_is_refused_and_changes_nothing(
    factory: sessionmaker[Session], new_uow: Callable[[], UnitOfWork]
) -> None:
    order = make_order()
    approve_draft_order(new_uow(), ORG, order, clock=lambda: DRAFTED)

    with pytest.raises(
        OrderAlreadyApproved, match=f"Draft order {order.id} of organisation {ORG} is already"
    ):
        approve_draft_order(new_uow(), ORG, replace(order, notes="later"), clock=lambda: APPROVED)

    row = stored(factory, order.id)
    assert (row.notes, row.updated_at) == (order.notes, DRAFTED)
    assert len(outbox_rows(factory)) == 1


def test_a_taken_order_number_names_the_order_holding_it(
    factory: sessionmaker[Session], new_uow: Callable[[], UnitOfWork]
) -> None:
    first = make_order("SO-7")
    approve_draft_order(new_uow(), ORG, first)

    with pytest.raises(
        DuplicateKeyError,
        match=f"Order number 'SO-7' is already used by draft order {first.id} in organisation",
    ):
        approve_draft_order(new_uow(), ORG, make_order("SO-7"))
    assert len(outbox_rows(factory)) == 1


def test_a_draft_renumbered_onto_a_taken_number_stays_a_draft(
    factory: sessionmaker[Session], new_uow: Callable[[], UnitOfWork]
) -> None:
    taken = make_order("SO-8")
    add_draft(factory, taken)
    draft = make_order("SO-9")
    add_draft(factory, draft)

    with pytest.raises(DuplicateKeyError, match=f"used by draft order {taken.id}"):
        approve_draft_order(new_uow(), ORG, replace(draft, order_number="SO-8"))

    row = stored(factory, draft.id)
    assert (row.status, row.order_number, row.approved_at) == ("DRAFT", "SO-9", None)
    assert outbox_rows(factory) == []


def test_an_id_of_another_organisation_is_refused(
    factory: sessionmaker[Session], new_uow: Callable[[], UnitOfWork]
) -> None:
    other = make_order(org=uuid.uuid4())
    add_draft(factory, other)
    mine = replace(other, org_id=ORG, order_number="SO-mine")

    with pytest.raises(DuplicateKeyError, match=f"Draft order {other.id} already exists"):
        approve_draft_order(new_uow(), ORG, mine)

    row = stored(factory, other.id)
    assert (row.org_id, row.status) == (other.org_id, "DRAFT")
    assert outbox_rows(factory) == []


def test_the_unit_of_work_is_usable_after_a_refusal(
    factory: sessionmaker[Session], new_uow: Callable[[], UnitOfWork]
) -> None:
    approve_draft_order(new_uow(), ORG, make_order("SO-1"))
    uow = new_uow()
    with pytest.raises(DuplicateKeyError):
        approve_draft_order(uow, ORG, make_order("SO-1"))

    approve_draft_order(uow, ORG, make_order("SO-2"))
    assert len(outbox_rows(factory)) == 2


def test_a_caller_owned_session_commits_through_the_one_statement_path(
    factory: sessionmaker[Session],
) -> None:
    order = make_order()
    with factory() as session:
        event = approve_draft_order(
            SessionUnitOfWork(session, outbox_encoder=outbox_value_encoder()), ORG, order
        )
    [outbox] = outbox_rows(factory)
    assert outbox.id == event.id and outbox.value is not None
    assert stored(factory, order.id).status == "APPROVED"


def test_concurrent_approvals_of_a_draft_write_one_event(
    factory: sessionmaker[Session], new_uow: Callable[[], UnitOfWork]
) -> None:
    order = make_order()
    add_draft(factory, order)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def approve() -> None:
        barrier.wait()
        try:
            approve_draft_order(new_uow(), ORG, order)
            outcomes.append("approved")
        except OrderAlreadyApproved:
            outcomes.append("refused")

    threads = [threading.Thread(target=approve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["approved", "refused", "refused", "refused"]
    assert len(outbox_rows(factory)) == 1


def test_pending_changes_of_a_caller_owned_session_are_flushed_first(
    factory: sessionmaker[Session],
) -> None:
    # A draft the caller added but did not flush is the order the approval overwrites.
    order = make_order()
    with factory() as session:
        session.add(
            DraftOrderRow(
                id=order.id,
                org_id=ORG,
                order_number=order.order_number,
                customer_code="C-0",
                created_at=DRAFTED,
                updated_at=DRAFTED,
            )
        )
        approve_draft_order(SessionUnitOfWork(session), ORG, order, clock=lambda: APPROVED)
    row = stored(factory, order.id)
    assert (row.status, row.customer_code, row.created_at) == ("APPROVED", "C-9", DRAFTED)
    assert len(outbox_rows(factory)) == 1
