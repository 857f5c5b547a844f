"""Unit tests of approve_draft_order against the in-memory unit of work."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.idempotency import generate_idempotency_key
from domain.model import DraftOrder, DraftOrderStatus, OrderLine
from domain.records import EVENT_HEADER_NAMES, order_from_json
from domain.repositories import DuplicateKeyError
from producer.approval import (
    OrderAlreadyApproved,
    approve_draft_order,
    build_push_requested,
    new_traceparent,
)
from tests.fakes import FakeClock, FakeUnitOfWork

ORG = uuid.UUID("22222222-2222-4222-8222-222222222222")
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def make_order(number: str = "SO-1", org: uuid.UUID = ORG) -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=number,
        customer_code="CUST-1",
        currency="EUR",
        lines=(
            OrderLine(1, "P-1", Decimal("3"), Decimal("0.10")),
            OrderLine(2, "P-2", Decimal("1.250"), Decimal("19.99"), unit="kg"),
        ),
        notes="deliver before noon",
        extra={"channel": "portal"},
    )


def test_approving_a_new_order_writes_the_order_and_its_event_together() -> None:
    uow = FakeUnitOfWork()
    clock = FakeClock()
    order = make_order()

    event = approve_draft_order(uow, ORG, order, clock=clock)

    assert uow.committed == 1
    with uow:
        stored = uow.draft_orders.get(ORG, order.id)
        assert stored == replace(order, status=DraftOrderStatus.APPROVED)
        assert uow.draft_orders.approved_at(order.id) == clock()
        assert list(uow.outbox.list_unpublished()) == [event]
    assert event.id == 1
    assert event.event_type == "PushRequested"
    assert event.aggregate_type == "DraftOrder"
    assert event.aggregate_id == order.id
    assert event.org_id == ORG
    assert event.created_at == clock()


def test_event_headers_carry_the_pipeline_contract() -> None:
    order = make_order()
    event = approve_draft_order(FakeUnitOfWork(), ORG, order, clock=FakeClock())

    assert tuple(event.headers) == EVENT_HEADER_NAMES
    assert all(isinstance(v, str) for v in event.headers.values())
    assert event.headers["event_id"] == str(event.event_id)
    assert event.headers["event_type"] == "PushRequested"
    assert event.headers["idempotency_key"] == generate_idempotency_key(ORG, order.id, 0)
    assert event.headers["org_id"] == str(ORG)
    assert event.headers["attempt"] == "0"
    assert event.headers["occurred_at"] == "2025-01-01T12:00:00Z"
    assert datetime.fromisoformat(event.headers["occurred_at"]) == FakeClock()()
    assert TRACEPARENT.match(event.headers["traceparent"])


def test_payload_is_json_ready_with_decimals_as_strings() -> None:
    order = make_order()
    event = approve_draft_order(FakeUnitOfWork(), ORG, order, clock=FakeClock())
    payload = json.loads(json.dumps(event.payload))

    assert payload["id"] == str(order.id)
    assert payload["status"] == "APPROVED"
    assert payload["approved_at"] == "2025-01-01T12:00:00Z"
    assert payload["total"] == "25.28750"
    assert payload["lines"][1] == {
        "line_no": 2,
        "product_code": "P-2",
        "quantity": "1.250",
        "unit_price": "19.99",
        "description": "",
        "unit": "kg",
    }
    assert order_from_json(payload) == replace(order, status=DraftOrderStatus.APPROVED)


def test_approving_an_existing_draft_updates_it() -> None:
    uow = FakeUnitOfWork()
    order = make_order()
    with uow:
        uow.draft_orders.add(order, now=datetime(2024, 12, 1, tzinfo=UTC))
        uow.commit()
    edited = replace(order, notes="edited before approval")

    approve_draft_order(uow, ORG, edited, clock=FakeClock())

    with uow:
        assert uow.draft_orders.get(ORG, order.id) == replace(
            edited, status=DraftOrderStatus.APPROVED
        )
        assert len(uow.outbox.list_unpublished()) == 1


def test_approving_twice_raises_and_writes_nothing() -> None:
    uow = FakeUnitOfWork()
    order = make_order()
    approve_draft_order(uow, ORG, order, clock=FakeClock())

    with pytest.raises(OrderAlreadyApproved, match=f"Draft order {order.id} .* already approved"):
        approve_draft_order(uow, ORG, order, clock=FakeClock())

    assert uow.committed == 1
    with uow:
        assert len(uow.outbox.list_unpublished()) == 1


def test_order_of_another_organisation_is_refused() -> None:
    uow = FakeUnitOfWork()
    order = make_order(org=uuid.uuid4())
    with pytest.raises(ValueError, match=f"belongs to organisation {order.org_id}, not {ORG}"):
        approve_draft_order(uow, ORG, order)
    assert uow.committed == 0
    assert uow.db.draft_orders == {}


def test_failure_writing_the_event_rolls_the_approval_back() -> None:
    uow = FakeUnitOfWork(outbox_fails_with=RuntimeError("disk full"))
    order = make_order()

    with pytest.raises(RuntimeError, match="disk full"):
        approve_draft_order(uow, ORG, order, clock=FakeClock())

    assert uow.committed == 0
    assert uow.rolled_back >= 1
    assert uow.db.draft_orders == {}
    assert uow.db.outbox == []


def test_failure_keeps_an_existing_draft_unchanged() -> None:
    db_uow = FakeUnitOfWork()
    order = make_order()
    with db_uow:
        db_uow.draft_orders.add(order, now=datetime(2024, 12, 1, tzinfo=UTC))
        db_uow.commit()
    uow = FakeUnitOfWork(db_uow.db, outbox_fails_with=RuntimeError("boom"))

    with pytest.raises(RuntimeError):
        approve_draft_order(uow, ORG, order, clock=FakeClock())

    with db_uow:
        assert db_uow.draft_orders.get(ORG, order.id) == order
        assert db_uow.outbox.list_unpublished() == []


def test_order_number_used_by_another_order_is_refused() -> None:
    uow = FakeUnitOfWork()
    approve_draft_order(uow, ORG, make_order("SO-9"), clock=FakeClock())

    with pytest.raises(DuplicateKeyError, match="'SO-9' is already used"):
        approve_draft_order(uow, ORG, make_order("SO-9"), clock=FakeClock())

    with uow:
        assert len(uow.outbox.list_unpublished()) == 1


def test_same_order_number_in_another_organisation_is_fine() -> None:
    uow = FakeUnitOfWork()
    other_org = uuid.uuid4()
    approve_draft_order(uow, ORG, make_order("SO-9"), clock=FakeClock())
    approve_draft_order(uow, other_org, make_order("SO-9", org=other_org), clock=FakeClock())
    with uow:
        assert [e.id for e in uow.outbox.list_unpublished()] == [1, 2]


def test_given_traceparent_is_propagated_and_checked() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    event = approve_draft_order(
        FakeUnitOfWork(), ORG, make_order(), clock=FakeClock(), traceparent=traceparent
    )
    assert event.headers["traceparent"] == traceparent

    uow = FakeUnitOfWork()
    with pytest.raises(ValueError, match="Invalid W3C traceparent"):
        approve_draft_order(uow, ORG, make_order(), traceparent="00-zz-01")
    assert uow.db.outbox == []


def test_new_traceparents_are_valid_and_distinct() -> None:
    values = {new_traceparent() for _ in range(50)}
    assert len(values) == 50
    assert all(TRACEPARENT.match(v) for v in values)


def test_build_push_requested_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_push_requested(make_order(), occurred_at=datetime(2025, 1, 1))
