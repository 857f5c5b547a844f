"""The orderflow.dropzone.order v1 document: layout, determinism, decimals, limits, unicode."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.connectors.dropzone_json_v1 import (
    DOCUMENT_FORMAT,
    FORMAT_VERSION,
    MAX_DOCUMENT_BYTES,
    DocumentError,
    DropzoneJsonV1Connector,
    build_document,
    encode_document,
    encode_order_document,
)
from domain.errors import ConnectorRejectedError
from domain.idempotency import export_key
from domain.model import DraftOrder, OrderLine

ORG = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
ORDER = uuid.UUID("11111111-2222-4333-8444-555555555555")


def order(**overrides: Any) -> DraftOrder:
    values: dict[str, Any] = {
        "id": ORDER,
        "org_id": ORG,
        "order_number": "SO-1001",
        "customer_code": "CUST-42",
        "currency": "EUR",
        "notes": "Deliver to gate 3",
        "lines": (
            OrderLine(2, "P-200", Decimal("1.5"), Decimal("10.00"), "Bolts", "kg"),
            OrderLine(1, "P-100", Decimal("3"), Decimal("2.50"), "Nuts"),
        ),
    }
    values.update(overrides)
    return DraftOrder(**values)


def test_documented_layout() -> None:
    document = json.loads(encode_order_document(order()))
    assert document == {
        "format": DOCUMENT_FORMAT,
        "format_version": FORMAT_VERSION,
        "export_key": export_key(ORG, ORDER),
        "org_id": str(ORG),
        "draft_order_id": str(ORDER),
        "order_number": "SO-1001",
        "customer_code": "CUST-42",
        "currency": "EUR",
        "notes": "Deliver to gate 3",
        "lines": [
            {
                "line_no": 1,
                "product_code": "P-100",
                "description": "Nuts",
                "quantity": "3",
                "unit": "unit",
                "unit_price": "2.50",
                "line_total": "7.50",
            },
            {
                "line_no": 2,
                "product_code": "P-200",
                "description": "Bolts",
                "quantity": "1.5",
                "unit": "kg",
                "unit_price": "10.00",
                "line_total": "15.000",
            },
        ],
        "total": "22.500",
    }
    assert DOCUMENT_FORMAT == "orderflow.dropzone.order" and FORMAT_VERSION == 1


def test_encoding_is_canonical() -> None:
    data = encode_order_document(order())
    assert data.endswith(b"}\n")
    text = data.decode("utf-8")
    document = json.loads(text)
    assert text == json.dumps(document, ensure_ascii=False, sort_keys=True, indent=2) + "\n"


def test_re_export_is_byte_identical_whatever_the_line_order() -> None:
    a = order()
    b = order(lines=tuple(reversed(a.lines)))
    assert encode_order_document(a) == encode_order_document(b)
    assert encode_order_document(a) == encode_order_document(order())


def test_duck_typed_orders_are_accepted() -> None:
    duck = SimpleNamespace(
        id=str(ORDER).upper(),
        org_id=ORG.hex,
        order_number="SO-1001",
        customer_code="CUST-42",
        currency="EUR",
        notes=None,
        lines=[SimpleNamespace(line_no=1, product_code="P", quantity=2, unit_price="0.10")],
    )
    document = build_document(duck)
    assert document["draft_order_id"] == str(ORDER)
    assert document["notes"] == ""
    assert document["lines"][0] == {
        "line_no": 1,
        "product_code": "P",
        "description": "",
        "quantity": "2",
        "unit": "unit",
        "unit_price": "0.10",
        "line_total": "0.20",
    }
    assert document["total"] == "0.20"


@pytest.mark.parametrize(
    ("quantity", "price", "line_total"),
    [
        (Decimal("1E+3"), Decimal("2"), "2000"),
        (Decimal("0.000001"), Decimal("3"), "0.000003"),
        (Decimal("-0.00"), Decimal("5"), "0.00"),
        (0.1, 3, "0.3"),
        ("12345678901234567890.123456789", "1", "12345678901234567890.123456789"),
        (
            Decimal("99999999999999999999999999999999"),
            Decimal("99999999999999999999.99"),
            "9999999999999999999998999999999900000000000000000000.01",
        ),
    ],
)
def test_decimals_are_exact_plain_strings(quantity, price, line_total) -> None:
    document = build_document(order(lines=(OrderLine(1, "P", quantity, price),)))
    assert document["lines"][0]["line_total"] == line_total
    assert document["total"] == line_total
    numbers = [document["total"], *document["lines"][0].values()]
    assert not any("E" in str(n) or "e" in str(n) for n in numbers if not isinstance(n, int))


def test_empty_order_totals_zero() -> None:
    assert build_document(order(lines=()))["total"] == "0"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (OrderLine(1, "P", Decimal("NaN"), Decimal(1)), r"lines\[0\].quantity must be a finite"),
        (OrderLine(1, "P", Decimal(1), Decimal("Infinity")), r"unit_price must be a finite"),
        (OrderLine(1, "P", Decimal("1E+5000"), Decimal(1)), r"quantity is out of range"),
        (OrderLine(1, "P", True, Decimal(1)), r"quantity must be a decimal"),  # type: ignore[arg-type]
        (OrderLine(1, "P", "abc", Decimal(1)), r"quantity must be a decimal"),  # type: ignore[arg-type]
        (OrderLine(1, "P", None, Decimal(1)), r"quantity must be a decimal"),  # type: ignore[arg-type]
        (OrderLine("1", "P", Decimal(1), Decimal(1)), r"line_no must be an integer"),  # type: ignore[arg-type]
        (OrderLine(1, None, Decimal(1), Decimal(1)), r"product_code must be a string"),  # type: ignore[arg-type]
    ],
)
def test_bad_lines_are_rejected_with_the_field_path(line: OrderLine, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        build_document(order(lines=(line,)))


def test_amounts_that_cannot_be_computed_exactly_are_rejected() -> None:
    # 60 001 significant digits: in range, but the product needs 120 000 digits.
    huge = Decimal("7" * 60_001 + "E-60000")
    with pytest.raises(DocumentError, match=r"lines\[0\] amounts are too large"):
        build_document(order(lines=(OrderLine(1, "P", huge, huge),)))


def test_decimal_digits_count_towards_the_size_limit() -> None:
    long_number = Decimal("1." + "0" * 5000)
    with pytest.raises(DocumentError, match="limit"):
        build_document(order(lines=(OrderLine(1, "P", long_number, Decimal(1)),)), max_bytes=4000)


def test_duplicate_line_numbers_are_rejected() -> None:
    lines = (OrderLine(1, "A", Decimal(1), Decimal(1)), OrderLine(1, "B", Decimal(1), Decimal(1)))
    with pytest.raises(DocumentError, match=r"lines\[1\].line_no 1 is used by more than one"):
        build_document(order(lines=lines))


@pytest.mark.parametrize("field_name", ["order_number", "customer_code", "currency"])
def test_required_text_fields(field_name: str) -> None:
    with pytest.raises(DocumentError, match=f"{field_name} must be a string"):
        build_document(order(**{field_name: None}))


UNICODE_SAMPLES = [
    "Grüße aus Köln",
    "日本語の注文",
    "emoji 😀👍🏽",
    "RTL \u05e9\u05dc\u05d5\u05dd",
    "zero\u200bwidth",
    'quotes " and \\ backslash',
    "nul \x00 and bell \x07",
    "line\nbreak\ttab",
    "\u2028\u2029",
    "\U0010ffff max code point",
]


@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_any_unicode_round_trips(text: str) -> None:
    draft = order(
        notes=text,
        customer_code=text,
        lines=(OrderLine(1, text, Decimal(1), Decimal(1), text, text),),
    )
    data = encode_order_document(draft)
    document = json.loads(data.decode("utf-8"))
    assert document["notes"] == text
    assert document["lines"][0]["description"] == text
    # Raw control characters never appear in the file: JSON escapes them.
    assert b"\x00" not in data and b"\x07" not in data


@pytest.mark.parametrize("surrogate", ["\ud800", "\udfff", "ok \udc80 then"])
def test_unpaired_surrogates_fail_with_a_clear_message(surrogate: str) -> None:
    with pytest.raises(DocumentError, match=r"notes contains an unpaired surrogate \(U\+D"):
        encode_order_document(order(notes=surrogate))
    line = OrderLine(1, "P", Decimal(1), Decimal(1), description=surrogate)
    with pytest.raises(DocumentError, match=r"lines\[0\].description contains an unpaired"):
        encode_order_document(order(lines=(line,)))
    with pytest.raises(DocumentError, match="cannot be encoded as UTF-8"):
        encode_document({"x": surrogate})


def test_size_limit_is_enforced_on_the_encoded_bytes() -> None:
    small = encode_order_document(order())
    assert len(small) < MAX_DOCUMENT_BYTES
    with pytest.raises(DocumentError, match=r"bytes, over the 1000 bytes limit"):
        encode_order_document(order(notes="x" * 900), max_bytes=1000)
    # Multi-byte characters count as bytes: 300 x 4-byte emoji > 1000 bytes.
    with pytest.raises(DocumentError, match="limit"):
        encode_order_document(order(notes="😀" * 300), max_bytes=1000)
    just_fits = encode_order_document(order(notes=""), max_bytes=10_000)
    assert len(just_fits) <= 10_000


def test_default_limit_is_5_mib_and_huge_text_is_refused_before_encoding() -> None:
    assert MAX_DOCUMENT_BYTES == 5 * 1024 * 1024
    with pytest.raises(DocumentError, match="5 MiB limit"):
        build_document(order(notes="x" * (MAX_DOCUMENT_BYTES + 1)))
    # Just under the limit in text, but over it once encoded (JSON framing, escapes).
    with pytest.raises(DocumentError, match="over the 5 MiB limit"):
        encode_order_document(order(notes="\x01" * (MAX_DOCUMENT_BYTES // 2)))
    long_but_fine = encode_order_document(order(notes="ü" * 1_000_000))
    assert 2_000_000 < len(long_but_fine) < MAX_DOCUMENT_BYTES


def test_connector_maps_document_problems_to_rejected_errors() -> None:
    connector = DropzoneJsonV1Connector(max_document_bytes=2000)
    config = {
        "host": "127.0.0.1",
        "port": 1,
        "username": "u",
        "password": "pw",
        "remote_dir": "/d",
        "host_key_fingerprint": "SHA256:" + "A" * 43,
    }
    # Rejected before any connection attempt (port 1 would fail differently).
    with pytest.raises(ConnectorRejectedError, match="limit") as too_big:
        connector.export(order(notes="x" * 5000), config)
    assert too_big.value.stage == "document"
    assert too_big.value.retryable is False
    with pytest.raises(ConnectorRejectedError, match="draft_order_id must be a UUID"):
        connector.export(SimpleNamespace(id="../../etc/passwd", org_id=ORG), config)
    with pytest.raises(ConnectorRejectedError, match="unpaired surrogate"):
        connector.export(order(notes="\ud800"), config)
    assert connector.pool.stats().opened == 0


@dataclass(frozen=True)
class _Line:
    line_no: int
    product_code: str
    quantity: Decimal
    unit_price: Decimal
    description: str = ""
    unit: str = "unit"


@dataclass(frozen=True)
class _Order:
    id: uuid.UUID
    org_id: uuid.UUID
    order_number: str
    customer_code: str
    currency: str
    notes: str
    lines: tuple[_Line, ...] = field(default=())


decimals = st.decimals(
    allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12, places=4
)
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
lines_strategy = st.lists(
    st.builds(
        _Line,
        line_no=st.integers(0, 10_000),
        product_code=texts,
        quantity=decimals,
        unit_price=decimals,
        description=texts,
        unit=texts,
    ),
    max_size=6,
    unique_by=lambda line: line.line_no,
)
orders = st.builds(
    _Order,
    id=st.uuids(),
    org_id=st.uuids(),
    order_number=texts,
    customer_code=texts,
    currency=texts,
    notes=texts,
    lines=lines_strategy.map(tuple),
)


@settings(max_examples=75, deadline=None)
@given(orders, st.randoms())
def test_any_order_encodes_deterministically_and_exactly(draft: _Order, rnd) -> None:
    data = encode_order_document(draft)
    shuffled = list(draft.lines)
    rnd.shuffle(shuffled)
    assert encode_order_document(_Order(**{**draft.__dict__, "lines": tuple(shuffled)})) == data
    document = json.loads(data)
    assert document["draft_order_id"] == str(draft.id)
    assert [line["line_no"] for line in document["lines"]] == sorted(
        line.line_no for line in draft.lines
    )
    with localcontext() as exact:  # the default 28 digits would round
        exact.prec = 1000
        total = Decimal(0)
        for line in document["lines"]:
            product = Decimal(line["quantity"]) * Decimal(line["unit_price"])
            assert Decimal(line["line_total"]) == product
            total += Decimal(line["line_total"])
        assert Decimal(document["total"]) == total
    assert document["notes"] == draft.notes
