"""Domain values <-> Avro records: orders, the outbox event, results, JSON payloads."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.avro import (
    InvalidMessage,
    UndecodableMessage,
    UnknownSchema,
    decode,
    decode_push_requested,
    decode_push_result,
    draft_order_from_push_requested,
    encode_outbox_event,
    encode_push_requested,
    jsonable,
    order_from_avro,
    order_to_avro,
    push_requested_from_outbox,
    push_requested_record,
    push_result_record,
)
from adapters.avro.records import DECIMAL_TEXT, decimal_from_text, decimal_to_text
from domain.idempotency import generate_idempotency_key
from domain.model import DraftOrder, DraftOrderStatus, OrderLine, PushStatus
from domain.records import OutboxEvent
from producer.approval import build_push_requested

ORG = uuid.UUID("44444444-4444-4444-8444-444444444444")
NOW = datetime(2025, 6, 30, 23, 59, 59, 999999, tzinfo=UTC)


def make_order(**changes: Any) -> DraftOrder:
    order = DraftOrder(
        id=uuid.UUID("55555555-5555-4555-8555-555555555555"),
        org_id=ORG,
        order_number="SO-7",
        customer_code="C-1",
        currency="CHF",
        lines=(
            OrderLine(1, "P-1", Decimal("3"), Decimal("0.10")),
            OrderLine(2, "P-2", Decimal("1.250"), Decimal("19.99"), "Bolts", "kg"),
        ),
        status=DraftOrderStatus.APPROVED,
        notes="fragile",
        extra={"colour": "blue", "n": 42, "nested": {"a": [1, 2.5, None, True]}, "s": "42"},
    )
    return replace(order, **changes)


def request_of(order: DraftOrder) -> dict[str, Any]:
    return decode_push_requested(
        encode_push_requested(
            push_requested_record(
                order,
                event_id=uuid.uuid4(),
                idempotency_key=generate_idempotency_key(order.org_id, order.id, 1),
                attempt=1,
                occurred_at=NOW,
                approved_at=NOW - timedelta(seconds=5),
            )
        )
    )


# -- orders ------------------------------------------------------------------------------


def test_order_to_avro_shape() -> None:
    record = order_to_avro(make_order())
    assert record["lines"][1] == {
        "line_no": 2,
        "product_code": "P-2",
        "description": "Bolts",
        "quantity": "1.250",
        "unit_price": "19.99",
        "unit": "kg",
    }
    # extra values are JSON texts: a string and the number it spells stay distinct.
    assert record["extra"]["colour"] == '"blue"'
    assert record["extra"]["n"] == "42"
    assert record["extra"]["s"] == '"42"'
    assert json.loads(record["extra"]["nested"]) == {"a": [1, 2.5, None, True]}


def test_order_round_trip_is_exact() -> None:
    order = make_order()
    back = order_from_avro(order_to_avro(order), order_id=order.id, org_id=ORG)
    assert back == order
    assert back.extra["s"] == "42"
    assert back.extra["n"] == 42
    assert [str(line.quantity) for line in back.lines] == ["3", "1.250"]


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_decimals_are_refused(value: Decimal) -> None:
    order = make_order(lines=(OrderLine(1, "P", value, Decimal(1)),))
    with pytest.raises(ValueError, match="finite"):
        order_to_avro(order)


@pytest.mark.parametrize("value", [Decimal("1.5"), {1, 2}, float("nan"), datetime.now(UTC)])
def test_extra_values_must_be_json(value: Any) -> None:
    with pytest.raises(ValueError, match="extra"):
        order_to_avro(make_order(extra={"bad": value}))


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_text_round_trips_and_matches_the_documented_syntax(value: Decimal) -> None:
    text = decimal_to_text(value)
    assert DECIMAL_TEXT.fullmatch(text)
    back = decimal_from_text(text)
    assert back == value
    assert str(back) == str(value)
    assert back.as_tuple() == value.as_tuple()


@pytest.mark.parametrize(
    "text", ["", "abc", "NaN", "Infinity", "1_000", " 1", "1 ", "1,5", "0x10", "1e", "--1", "."]
)
def test_decimal_text_refuses_what_other_languages_would_not_read(text: str) -> None:
    with pytest.raises(ValueError, match="decimal"):
        decimal_from_text(text)


@pytest.mark.parametrize("text", ["1", "-0.5", "+2", ".5", "5.", "1E+3", "1.23e-7", "0E-12"])
def test_decimal_text_accepts_the_documented_syntax(text: str) -> None:
    assert decimal_from_text(text) == Decimal(text)


def test_a_message_with_a_bad_decimal_raises_invalid_message() -> None:
    """An upstream service may publish anything; the consumer must DLQ it, not crash."""
    order = make_order()
    record = push_requested_record(
        order,
        event_id=uuid.uuid4(),
        idempotency_key="k",
        attempt=0,
        occurred_at=NOW,
        approved_at=NOW,
    )
    record["order"]["lines"][1]["unit_price"] = "19,99"
    decoded = decode_push_requested(encode_push_requested(record))
    with pytest.raises(InvalidMessage, match=r"order\.lines\[1\].*19,99") as info:
        draft_order_from_push_requested(decoded)
    assert isinstance(info.value, UndecodableMessage)


def test_a_message_with_a_non_json_extra_raises_invalid_message() -> None:
    avro = order_to_avro(make_order())
    avro["extra"]["colour"] = "blue"  # not a JSON text: quotes missing
    with pytest.raises(InvalidMessage, match="extra"):
        order_from_avro(avro, order_id=uuid.uuid4(), org_id=ORG)


# -- the outbox event ----------------------------------------------------------------------


def test_the_outbox_event_of_an_approval_becomes_a_push_requested() -> None:
    order = make_order()
    event = build_push_requested(order, occurred_at=NOW)
    record = push_requested_from_outbox(event)
    assert record["event_id"] == event.event_id
    assert record["org_id"] == ORG
    assert record["draft_order_id"] == order.id
    assert record["idempotency_key"] == event.headers["idempotency_key"]
    assert record["attempt"] == 0
    assert record["occurred_at"] == NOW
    assert record["approved_at"] == NOW
    name, decoded = decode(encode_outbox_event(event))
    assert name == "PushRequested" == event.headers["event_type"]
    assert str(decoded["event_id"]) == event.headers["event_id"]
    assert decoded["idempotency_key"] == generate_idempotency_key(ORG, order.id, 0)
    assert draft_order_from_push_requested(decoded) == order


def test_a_stored_outbox_payload_survives_a_json_round_trip() -> None:
    """The payload is JSONB in PostgreSQL: what comes back is plain JSON."""
    event = build_push_requested(make_order(), occurred_at=NOW)
    stored = replace(event, payload=json.loads(json.dumps(event.payload)))
    assert decode(encode_outbox_event(stored)) == decode(encode_outbox_event(event))


def test_an_outbox_event_that_contradicts_itself_is_refused() -> None:
    event = build_push_requested(make_order(), occurred_at=NOW)
    with pytest.raises(ValueError, match="another order"):
        push_requested_from_outbox(replace(event, aggregate_id=uuid.uuid4()))
    with pytest.raises(ValueError, match="Not a PushRequested"):
        push_requested_from_outbox(replace(event, event_type="Other"))


def test_outbox_events_without_a_schema_raise_unknown_schema() -> None:
    event = build_push_requested(make_order(), occurred_at=NOW)
    with pytest.raises(UnknownSchema, match="OrderShipped"):
        encode_outbox_event(replace(event, event_type="OrderShipped"))


# -- results -------------------------------------------------------------------------------


def test_push_result_record_copies_the_request() -> None:
    request = request_of(make_order())
    result = push_result_record(
        request, event_id=uuid.uuid4(), status=PushStatus.SUCCESS, completed_at=NOW
    )
    assert result["request_event_id"] == request["event_id"]
    assert result["org_id"] == request["org_id"]
    assert result["draft_order_id"] == request["draft_order_id"]
    assert result["idempotency_key"] == request["idempotency_key"]
    assert result["attempt"] == result["retry_count"] == 1
    assert result["approved_at"] == request["approved_at"]
    assert result["occurred_at"] == result["completed_at"] == NOW
    assert result["status"] == "SUCCESS"


@pytest.mark.parametrize("status", [PushStatus.PENDING, PushStatus.RETRYING, "OK"])
def test_a_result_is_only_success_or_failed(status: Any) -> None:
    with pytest.raises(ValueError, match="SUCCESS or FAILED"):
        push_result_record(
            request_of(make_order()), event_id=uuid.uuid4(), status=status, completed_at=NOW
        )


def test_a_result_stored_as_a_json_outbox_payload_encodes_the_same() -> None:
    """The consumer writes the result to the outbox as JSON; the relay encodes it."""
    result = push_result_record(
        request_of(make_order()),
        event_id=uuid.uuid4(),
        status="FAILED",
        completed_at=NOW,
        error_class="ConnectorTransientError",
        error_message="retries exhausted",
        latency_ms=5000,
    )
    payload = json.loads(json.dumps(jsonable(result)))
    assert payload["completed_at"] == "2025-06-30T23:59:59.999999Z"
    event = OutboxEvent(
        event_id=result["event_id"],
        aggregate_type="DraftOrder",
        aggregate_id=result["draft_order_id"],
        org_id=ORG,
        event_type="PushResult",
        payload=payload,
        headers={},
        created_at=NOW,
    )
    assert decode_push_result(encode_outbox_event(event)) == {**result, "schema_version": 1}


def test_jsonable_refuses_naive_datetimes_and_keeps_decimals_exact() -> None:
    with pytest.raises(ValueError, match="Naive"):
        jsonable({"at": datetime(2025, 1, 1)})
    assert jsonable({"q": (Decimal("1.50"),)}) == {"q": ["1.50"]}
