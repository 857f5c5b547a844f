"""``to_draft_order``: every accepted shape, every refusal at once, and the JSON round trip."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.postgres.models import DraftOrderRow
from domain.errors import OrderFlowError
from domain.model import DraftOrder, DraftOrderStatus, OrderLine
from domain.order_input import InvalidDraftOrder, OrderProblem, to_draft_order
from domain.records import order_line_to_json, order_to_json

ORG = uuid.UUID("22222222-2222-4222-8222-222222222222")
ORDER_ID = uuid.UUID("33333333-3333-4333-8333-333333333333")

EXPECTED = DraftOrder(
    id=ORDER_ID,
    org_id=ORG,
    order_number="SO-1",
    customer_code="C-1",
    currency="CHF",
    lines=(
        OrderLine(1, "P-1", Decimal("2"), Decimal("9.99"), "Bolts", "box"),
        OrderLine(2, "P-2", Decimal("1.250"), Decimal("4"), "", "unit"),
    ),
    status=DraftOrderStatus.APPROVED,
    notes="ring twice",
    extra={"channel": "web", "tags": [1, None, True]},
)


def problems(obj: object, **kwargs: Any) -> list[str]:
    with pytest.raises(InvalidDraftOrder) as excinfo:
        to_draft_order(obj, **kwargs)
    return [str(p) for p in excinfo.value.problems]


# -- accepted shapes ----------------------------------------------------------------------


def test_a_draft_order_converts_to_an_equal_one() -> None:
    assert to_draft_order(EXPECTED) == EXPECTED
    assert to_draft_order(EXPECTED, org_id=str(ORG)) == EXPECTED


def test_the_orm_row_built_without_a_database_converts() -> None:
    row = DraftOrderRow(
        id=ORDER_ID,
        org_id=ORG,
        order_number="SO-1",
        customer_code="C-1",
        currency="CHF",
        status="APPROVED",
        lines=[order_line_to_json(line) for line in EXPECTED.lines],
        notes="ring twice",
        extra=dict(EXPECTED.extra),
    )
    assert to_draft_order(row) == EXPECTED


def test_an_orm_row_with_only_the_required_columns_gets_the_defaults() -> None:
    # Column server defaults apply at INSERT only: unset attributes read as None.
    row = DraftOrderRow(id=ORDER_ID, org_id=ORG, order_number="SO-1", customer_code="C-1")
    order = to_draft_order(row)
    assert (order.currency, order.status, order.notes, order.lines, order.extra) == (
        "EUR",
        DraftOrderStatus.DRAFT,
        "",
        (),
        {},
    )


def test_a_simple_namespace_with_plain_values_converts() -> None:
    lines = [
        SimpleNamespace(
            line_no=1,
            product_code="P-1",
            quantity=2,
            unit_price="9.99",
            description="Bolts",
            unit="box",
        ),
        {"line_no": 2, "product_code": "P-2", "quantity": "1.250", "unit_price": Decimal(4)},
    ]
    obj = SimpleNamespace(
        id=str(ORDER_ID),
        org_id=str(ORG),
        order_number="SO-1",
        customer_code="C-1",
        currency="CHF",
        status="APPROVED",
        notes="ring twice",
        lines=lines,
        extra={"channel": "web", "tags": [1, None, True]},
    )
    assert to_draft_order(obj) == EXPECTED


class AppStatus(enum.Enum):
    DRAFT = "DRAFT"
    APPROVED = "APPROVED"


@dataclass
class AppLine:
    line_no: int
    product_code: str
    quantity: Decimal
    unit_price: Decimal
    description: str = ""
    unit: str = "unit"


@dataclass
class AppOrder:
    """An application's own order class: no org_id, its own enum, a total of its own."""

    id: uuid.UUID
    order_number: str
    customer_code: str
    currency: str
    status: AppStatus
    notes: str
    lines: list[AppLine]
    extra: dict[str, Any] = field(default_factory=dict)
    total: Decimal = Decimal("-1")  # e.g. with taxes: attributes other than the order's are ignored


def test_an_applications_dataclass_converts_with_the_org_given() -> None:
    app = AppOrder(
        id=ORDER_ID,
        order_number="SO-1",
        customer_code="C-1",
        currency="CHF",
        status=AppStatus.APPROVED,
        notes="ring twice",
        lines=[
            AppLine(1, "P-1", Decimal("2"), Decimal("9.99"), "Bolts", "box"),
            AppLine(2, "P-2", Decimal("1.250"), Decimal("4")),
        ],
        extra={"channel": "web", "tags": [1, None, True]},
    )
    assert to_draft_order(app, org_id=ORG) == EXPECTED
    assert problems(app) == ["org_id: required (or give the organisation)"]


def test_a_mapping_in_order_to_json_shape_converts_back() -> None:
    data = order_to_json(EXPECTED)
    assert "total" in data and "status" in data
    assert to_draft_order(data) == EXPECTED


def test_null_optional_fields_take_their_defaults() -> None:
    data = {
        "id": str(ORDER_ID),
        "org_id": None,
        "order_number": "SO-1",
        "customer_code": "C-1",
        "currency": None,
        "status": None,
        "notes": None,
        "lines": None,
        "extra": None,
        "total": None,
    }
    order = to_draft_order(data, org_id=ORG)
    assert order == DraftOrder(ORDER_ID, ORG, "SO-1", "C-1")


def test_amount_forms_are_exact() -> None:
    line = {"line_no": 1, "product_code": "P", "quantity": "1.2500", "unit_price": 3}
    order = to_draft_order({**order_to_json(EXPECTED), "lines": [line], "total": "3.75"})
    assert order.lines[0].quantity.as_tuple() == Decimal("1.2500").as_tuple()
    assert order.lines[0].unit_price == Decimal(3)


# -- refusals -----------------------------------------------------------------------------


def test_every_problem_is_listed_at_once_with_its_path() -> None:
    data = {
        "draft_order_id": str(ORDER_ID),
        "order_number": 42,
        "status": "SHIPPED",
        "lines": [
            {"line_no": 1, "product_code": "P", "quantity": "1", "unit_price": "1"},
            {"line_no": "2", "product_code": "P", "unit_price": 1.5, "colour": "red"},
            "not a line",
        ],
        "extra": {"when": Decimal("1"), 7: "x"},
    }
    found = problems(data, org_id=ORG)
    assert found == [
        "draft_order_id: unknown field",
        "id: required",
        "order_number: must be text, not int",
        "customer_code: required",
        "status: must be one of DRAFT, APPROVED",
        "lines[1].colour: unknown field",
        "lines[1].line_no: must be an integer, not str",
        "lines[1].quantity: required",
        'lines[1].unit_price: must be a decimal number as text (e.g. "2.50"), not a float',
        "lines[2]: must be a mapping or an object with the line's attributes, not str",
        "extra['when']: not a JSON value (Decimal)",
        "extra[7]: keys must be text",
    ]


def test_one_value_error_of_the_project_with_every_problem_in_its_message() -> None:
    with pytest.raises(ValueError, match="Invalid draft order: ") as excinfo:
        to_draft_order({"lines": [{}]}, org_id=ORG)
    error = excinfo.value
    assert isinstance(error, InvalidDraftOrder) and isinstance(error, OrderFlowError)
    assert OrderProblem("lines[0].quantity", "required") in error.problems
    text = str(error)
    for path in ("id", "order_number", "customer_code", "lines[0].line_no", "lines[0].unit_price"):
        assert f"{path}: required" in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("field_name", "value", "expected"),
    [
        ("id", "not-a-uuid", "id: not a UUID"),
        ("id", 12, "id: must be a UUID or its text, not int"),
        ("org_id", "x", "org_id: not a UUID"),
        ("currency", b"EUR", "currency: must be text, not bytes"),
        ("status", 1, "status: must be one of DRAFT, APPROVED, not int"),
        ("status", "approved", "status: must be one of DRAFT, APPROVED"),
        ("lines", "P-1", "lines: must be a list of lines, not str"),
        ("lines", {"line_no": 1}, "lines: must be a list of lines, not dict"),
        ("extra", ["a"], "extra: must be a mapping of text keys to JSON values, not list"),
        ("extra", {"x": float("nan")}, "extra['x']: must be a finite number"),
        ("total", "100", "total: does not equal the sum of quantity * unit_price of the lines"),
        ("total", "ten", "total: must be a finite decimal number"),
    ],
)
def test_a_wrong_field_is_named(field_name: str, value: Any, expected: str) -> None:
    data = {**order_to_json(EXPECTED), field_name: value}
    (found,) = problems(data)
    assert found.startswith(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NaN", "must be a finite decimal number"),
        ("Infinity", "must be a finite decimal number"),
        (" 1", "must be a finite decimal number"),
        ("1_000", "must be a finite decimal number"),
        ("1,5", "must be a finite decimal number"),
        ("\u0661", "must be a finite decimal number"),  # an Arabic-Indic digit: Decimal reads it
        ("1E+99999999999999999999999", "must be a finite decimal number"),
        (Decimal("NaN"), "must be a finite decimal number"),
        (Decimal("-Infinity"), "must be a finite decimal number"),
        (2.5, "not a float"),
        (True, "not bool"),
        ([1], "not list"),
    ],
)
def test_a_bad_amount_is_refused(value: Any, expected: str) -> None:
    line = {"line_no": 1, "product_code": "P", "quantity": value, "unit_price": "1"}
    (found,) = problems({**order_to_json(EXPECTED), "lines": [line], "total": None})
    assert found.startswith("lines[0].quantity: ") and expected in found


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, "must be an integer, not bool"), (2**31, "must be between"), (1.0, "not float")],
)
def test_a_bad_line_number_is_refused(value: Any, expected: str) -> None:
    line = {"line_no": value, "product_code": "P", "quantity": "1", "unit_price": "1"}
    (found,) = problems({**order_to_json(EXPECTED), "lines": [line], "total": None})
    assert found.startswith("lines[0].line_no: ") and expected in found


@pytest.mark.parametrize("value", [None, "SO-1", 7, [order_to_json(EXPECTED)], b"{}"])
def test_a_value_that_is_no_record_is_refused_as_a_whole(value: Any) -> None:
    (found,) = problems(value, org_id=ORG)
    assert found.startswith("draft_order: must be a DraftOrder, a mapping or an object")


def test_an_object_without_the_attributes_lists_what_is_required() -> None:
    assert problems(object(), org_id=ORG) == [
        "id: required",
        "order_number: required",
        "customer_code: required",
    ]


def test_an_attribute_that_fails_to_load_is_named_once() -> None:
    class Detached:
        id = ORDER_ID
        order_number = "SO-1"
        customer_code = "C-1"

        @property
        def lines(self) -> list[Any]:
            raise RuntimeError("Parent instance is not bound to a Session")

    assert problems(Detached(), org_id=ORG) == ["lines: cannot be read (RuntimeError)"]


def test_a_different_organisation_is_refused() -> None:
    other = uuid.uuid4()
    assert problems(EXPECTED, org_id=other) == [
        f"org_id: belongs to organisation {ORG}, not {other}"
    ]
    assert problems(EXPECTED, org_id="nope") == ["org_id (the organisation given): not a UUID"]


def test_messages_never_echo_the_values_given() -> None:
    secret = "personal-data-" + "x" * 5000
    data = {
        secret: 1,
        "id": secret,
        "org_id": secret,
        "order_number": 1,
        "customer_code": "C",
        "status": secret,
        "lines": [{"line_no": 1, "product_code": "P", "quantity": secret, "unit_price": "1"}],
        "extra": {secret: Decimal(1)},
        "total": secret,
    }
    with pytest.raises(InvalidDraftOrder) as excinfo:
        to_draft_order(data)
    text = str(excinfo.value)
    assert "x" * 50 not in text
    assert len(excinfo.value.problems) == 8
    assert len(text) < 1000


# -- round trip ---------------------------------------------------------------------------

texts = st.text(max_size=20)
amounts = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) < 30
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
order_lines = st.builds(
    OrderLine,
    line_no=st.integers(-(2**31), 2**31 - 1),
    product_code=texts,
    quantity=amounts,
    unit_price=amounts,
    description=texts,
    unit=texts,
)
orders = st.builds(
    DraftOrder,
    id=st.uuids(),
    org_id=st.uuids(),
    order_number=texts,
    customer_code=texts,
    currency=texts,
    lines=st.lists(order_lines, max_size=4).map(tuple),
    status=st.sampled_from(DraftOrderStatus),
    notes=texts,
    extra=st.dictionaries(texts, json_values, max_size=3),
)


@settings(max_examples=200)
@given(order=orders)
def test_order_to_json_converts_back_to_the_same_order(order: DraftOrder) -> None:
    data = order_to_json(order)
    assert to_draft_order(data) == order
    assert to_draft_order(data, org_id=order.org_id) == order
    assert to_draft_order(order) == order
