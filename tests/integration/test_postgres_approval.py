"""approve_draft_order on a real PostgreSQL: order and outbox event in one transaction."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Self

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.avro.codec import decode_push_requested
from adapters.avro.outbox_values import outbox_value_encoder
from adapters.postgres.engine import make_session_factory
from adapters.postgres.models import DraftOrderRow, OutboxEventRow
from adapters.postgres.unit_of_work import SqlAlchemyUnitOfWork
from domain.idempotency import generate_idempotency_key
from domain.model import DraftOrder, OrderLine
from domain.records import OutboxEvent
from domain.repositories import ApprovalRefused, ApprovalWriter, DuplicateKeyError
from producer.approval import OrderAlreadyApproved, approve_draft_order

pytestmark = pytest.mark.integration

ORG = uuid.uuid4()
ORDER_TIME = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    yield make_session_factory(engine)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE draft_order, outbox_event, outbox_published"))


def make_order(number: str = "SO-1") -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=ORG,
        order_number=number,
        customer_code="C-9",
        lines=(OrderLine(1, "P-1", Decimal("4"), Decimal("2.50")),),
    )


def counts(factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory() as s:
        return (
            s.scalar(select(func.count()).select_from(DraftOrderRow)) or 0,
            s.scalar(select(func.count()).select_from(OutboxEventRow)) or 0,
        )


class _ExplodingApprovals:
    """Writes order and event for real, then fails: the statement already reached the server."""

    def __init__(self, inner: ApprovalWriter) -> None:
        self.inner = inner

    def write(
        self, order: DraftOrder, event: OutboxEvent, *, now: datetime
    ) -> OutboxEvent | ApprovalRefused:
        self.inner.write(order, event, now=now)
        raise RuntimeError("relay bookkeeping failed")


class _ExplodingUnitOfWork(SqlAlchemyUnitOfWork):
    def __enter__(self) -> Self:
        super().__enter__()
        self.approvals = _ExplodingApprovals(self.approvals)
        return self


def test_approval_commits_order_and_event_together(factory: sessionmaker[Session]) -> None:
    order = make_order()

    event = approve_draft_order(SqlAlchemyUnitOfWork(factory), ORG, order)

    with factory() as s:
        row = s.get(DraftOrderRow, order.id)
        assert row is not None
        assert row.status == "APPROVED"
        assert row.approved_at is not None
        assert row.lines[0]["unit_price"] == "2.50"
        outbox = s.scalars(select(OutboxEventRow)).one()
    assert outbox.id == event.id
    assert outbox.event_id == event.event_id
    assert outbox.aggregate_id == order.id
    assert outbox.headers["idempotency_key"] == generate_idempotency_key(ORG, order.id, 0)
    assert outbox.payload["status"] == "APPROVED"


def test_failure_after_both_writes_leaves_neither(factory: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError, match="relay bookkeeping failed"):
        approve_draft_order(_ExplodingUnitOfWork(factory), ORG, make_order())
    assert counts(factory) == (0, 0)


def test_failure_keeps_an_existing_draft_a_draft(factory: sessionmaker[Session]) -> None:
    order = make_order()
    uow = SqlAlchemyUnitOfWork(factory)
    with uow:
        uow.draft_orders.add(order, now=ORDER_TIME)
        uow.commit()

    with pytest.raises(RuntimeError):
        approve_draft_order(_ExplodingUnitOfWork(factory), ORG, order)

    with factory() as s:
        row = s.get(DraftOrderRow, order.id)
        assert row is not None
        assert (row.status, row.approved_at) == ("DRAFT", None)
    assert counts(factory) == (1, 0)


def test_second_approval_is_refused_and_writes_nothing(factory: sessionmaker[Session]) -> None:
    order = make_order()
    approve_draft_order(SqlAlchemyUnitOfWork(factory), ORG, order)
    with pytest.raises(OrderAlreadyApproved):
        approve_draft_order(SqlAlchemyUnitOfWork(factory), ORG, order)
    assert counts(factory) == (1, 1)


def test_duplicate_order_number_is_refused(factory: sessionmaker[Session]) -> None:
    approve_draft_order(SqlAlchemyUnitOfWork(factory), ORG, make_order("SO-7"))
    with pytest.raises(DuplicateKeyError):
        approve_draft_order(SqlAlchemyUnitOfWork(factory), ORG, make_order("SO-7"))
    assert counts(factory) == (1, 1)


@pytest.mark.parametrize("existing", [True, False], ids=["existing-draft", "new-order"])
def test_concurrent_approvals_write_exactly_one_event(
    factory: sessionmaker[Session], existing: bool
) -> None:
    order = make_order()
    if existing:
        uow = SqlAlchemyUnitOfWork(factory)
        with uow:
            uow.draft_orders.add(order, now=ORDER_TIME)
            uow.commit()
    barrier = threading.Barrier(6)
    outcomes: list[str] = []
    lock = threading.Lock()

    def approve() -> None:
        barrier.wait()
        try:
            approve_draft_order(SqlAlchemyUnitOfWork(factory), ORG, order)
            result = "approved"
        except (OrderAlreadyApproved, DuplicateKeyError) as exc:
            result = type(exc).__name__
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=approve) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert len(outcomes) == 6
    assert outcomes.count("approved") == 1
    assert counts(factory) == (1, 1)


def test_the_outbox_encoder_stores_the_kafka_value_with_the_event(
    factory: sessionmaker[Session],
) -> None:
    uow = SqlAlchemyUnitOfWork(factory, outbox_encoder=outbox_value_encoder())
    order = make_order()
    event = approve_draft_order(uow, ORG, order, clock=lambda: ORDER_TIME)
    with factory() as s:
        stored = s.scalars(select(OutboxEventRow.value)).one()
    assert stored is not None and stored == event.value
    record = decode_push_requested(stored)
    assert str(record["draft_order_id"]) == str(order.id)
    assert str(record["event_id"]) == str(event.event_id)


def test_an_event_the_encoder_refuses_is_not_written_and_neither_is_the_order(
    factory: sessionmaker[Session],
) -> None:
    def refuse(event: OutboxEvent) -> bytes:
        raise ValueError(f"payload of {event.event_type} does not fit its schema")

    uow = SqlAlchemyUnitOfWork(factory, outbox_encoder=refuse)
    with pytest.raises(ValueError, match="does not fit its schema"):
        approve_draft_order(uow, ORG, make_order())
    assert counts(factory) == (0, 0)
