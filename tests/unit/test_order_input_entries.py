"""``push_order`` and ``approve_draft_order`` take any draft order object (fakes).

Both go through ``domain.order_input.to_draft_order``: the ORM row, a mapping,
a ``SimpleNamespace`` or an application's own class work like a ``DraftOrder``;
bad input raises one ``InvalidDraftOrder`` and nothing is written or exported.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.postgres.models import DraftOrderRow
from domain.model import DraftOrder, DraftOrderStatus, OrderLine, PushStatus
from domain.order_input import InvalidDraftOrder
from domain.records import order_line_to_json, order_to_json
from producer.approval import approve_draft_order
from tests.fakes import FakeClock, FakeUnitOfWork
from tests.unit.test_push_service import ORG, make_world


def make_order() -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=ORG,
        order_number=f"SO-{uuid.uuid4().hex[:6]}",
        customer_code="C-7",
        lines=(OrderLine(1, "P-1", Decimal("2"), Decimal("9.99"), "Bolts"),),
        notes="n",
        extra={"k": [1]},
    )


@dataclass
class AppLine:
    line_no: int
    product_code: str
    quantity: str
    unit_price: str


@dataclass
class AppOrder:
    id: str
    order_number: str
    customer_code: str
    lines: list[AppLine]
    notes: str = "n"
    extra: dict[str, Any] | None = None


def shapes(order: DraftOrder) -> dict[str, object]:
    """The same order in every accepted shape (the last two without an org_id)."""
    line = order.lines[0]
    return {
        "DraftOrder": order,
        "ORM row": DraftOrderRow(
            id=order.id,
            org_id=order.org_id,
            order_number=order.order_number,
            customer_code=order.customer_code,
            status="DRAFT",
            lines=[order_line_to_json(line)],
            notes=order.notes,
            extra=dict(order.extra),
        ),
        "mapping": order_to_json(order),
        "SimpleNamespace": SimpleNamespace(**{**vars_of(order), "org_id": str(order.org_id)}),
        "app dataclass": AppOrder(
            id=str(order.id),
            order_number=order.order_number,
            customer_code=order.customer_code,
            lines=[AppLine(1, line.product_code, "2", "9.99")],
            extra=dict(order.extra),
        ),
    }


def vars_of(order: DraftOrder) -> dict[str, Any]:
    return {name: getattr(order, name) for name in DraftOrder.__dataclass_fields__}


SHAPES = list(shapes(make_order()))


@pytest.mark.parametrize("shape", SHAPES)
def test_push_order_takes_every_shape(shape: str) -> None:
    world = make_world()
    order = make_order()
    obj = shapes(order)[shape]
    if shape == "app dataclass":
        # Its description is not an attribute of the class: the default is used.
        order = replace(order, lines=(replace(order.lines[0], description=""),))

    result = world.orchestrator.push_order(ORG, obj)

    assert result.status is PushStatus.SUCCESS
    assert result.draft_order_id == order.id
    (exported, _config) = world.connector.calls[0]
    assert exported == order
    assert result.request_json == order_to_json(order)


@pytest.mark.parametrize("shape", SHAPES)
def test_approve_draft_order_takes_every_shape(shape: str) -> None:
    uow = FakeUnitOfWork()
    order = make_order()
    if shape == "app dataclass":
        order = replace(order, lines=(replace(order.lines[0], description=""),))
    event = approve_draft_order(uow, str(ORG), shapes(order)[shape], clock=FakeClock())
    with uow:
        stored = uow.draft_orders.get(ORG, order.id)
    assert stored == replace(order, status=DraftOrderStatus.APPROVED)
    assert event.aggregate_id == order.id and event.org_id == ORG


BAD: dict[str, tuple[object, list[str]]] = {
    "missing fields": (
        {"id": str(uuid.uuid4()), "lines": [{"line_no": 1, "product_code": "P"}]},
        [
            "order_number: required",
            "customer_code: required",
            "lines[0].quantity: required",
            "lines[0].unit_price: required",
        ],
    ),
    "unknown key": (
        {**order_to_json(make_order()), "draft_order_id": str(uuid.uuid4())},
        ["draft_order_id: unknown field"],
    ),
    "ORM row with a bad status": (
        DraftOrderRow(
            id=uuid.uuid4(),
            org_id=ORG,
            order_number="SO-X",
            customer_code="C",
            status="SHIPPED",
        ),
        ["status: must be one of DRAFT, APPROVED"],
    ),
    "another organisation": (
        replace(make_order(), org_id=uuid.UUID(int=7)),
        [f"org_id: belongs to organisation {uuid.UUID(int=7)}, not {ORG}"],
    ),
    "not an order at all": (
        "SO-1",
        [
            "draft_order: must be a DraftOrder, a mapping or an object with the order's "
            "attributes, not str"
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_push_order_refuses_bad_input_before_writing_or_exporting(case: str) -> None:
    obj, expected = BAD[case]
    world = make_world()
    with pytest.raises(InvalidDraftOrder) as excinfo:
        world.orchestrator.push_order(ORG, obj)
    assert [str(p) for p in excinfo.value.problems] == expected
    assert world.connector.calls == []
    assert world.uow.db.push_log == {}


@pytest.mark.parametrize("case", sorted(BAD))
def test_approve_draft_order_refuses_bad_input_before_writing(case: str) -> None:
    obj, expected = BAD[case]
    uow = FakeUnitOfWork()
    with pytest.raises(InvalidDraftOrder) as excinfo:
        approve_draft_order(uow, ORG, obj, clock=FakeClock())
    assert [str(p) for p in excinfo.value.problems] == expected
    assert uow.committed == 0
    assert uow.db.outbox == [] and uow.db.draft_orders == {}
