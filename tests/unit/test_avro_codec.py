"""The Avro codec: single-object framing, round trips, bad input, schema evolution."""

from __future__ import annotations

import copy
import io
import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.avro import (
    HEADER_SIZE,
    MAGIC,
    AvroCodec,
    InvalidMessage,
    InvalidRecord,
    SchemaVersion,
    UndecodableMessage,
    UnknownSchema,
    decode,
    decode_push_requested,
    decode_push_result,
    default_codec,
    draft_order_from_push_requested,
    encode,
    encode_push_requested,
    encode_push_result,
    push_requested_record,
    push_result_record,
)
from adapters.avro.codec import MAX_REASON_LENGTH
from domain.idempotency import generate_idempotency_key
from domain.model import DraftOrder, DraftOrderStatus, OrderLine
from schemas.loader import load_schema, parse, published_json, schema_fingerprint, schema_json

ORG = uuid.UUID("33333333-3333-4333-8333-333333333333")
APPROVED_AT = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)

# Text Avro can carry: any Unicode scalar value (no lone surrogates).
# Any UTF-8 text PostgreSQL can store (U+0000 cannot be: see test_nul_anywhere_...).
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
decimals = st.decimals(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
lines = st.builds(
    OrderLine,
    line_no=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    product_code=texts,
    quantity=decimals,
    unit_price=decimals,
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
    lines=st.lists(lines, max_size=8).map(tuple),
    status=st.just(DraftOrderStatus.APPROVED),
    notes=texts,
    extra=st.dictionaries(texts, json_values, max_size=4),
)
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)


def make_order(n_lines: int = 2, notes: str = "") -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=ORG,
        order_number="SO-42",
        customer_code="CUST-9",
        currency="EUR",
        lines=tuple(
            OrderLine(i + 1, f"P-{i}", Decimal("1.250"), Decimal("19.99"), description="Schrauben")
            for i in range(n_lines)
        ),
        status=DraftOrderStatus.APPROVED,
        notes=notes,
        extra={"channel": "web"},
    )


def request_for(order: DraftOrder, attempt: int = 0) -> dict[str, Any]:
    return push_requested_record(
        order,
        event_id=uuid.uuid4(),
        idempotency_key=generate_idempotency_key(order.org_id, order.id, attempt),
        attempt=attempt,
        occurred_at=APPROVED_AT + timedelta(seconds=attempt),
        approved_at=APPROVED_AT,
    )


def assert_same_order(decoded: DraftOrder, original: DraftOrder) -> None:
    assert decoded == original
    for got, want in zip(decoded.lines, original.lines, strict=True):
        # Decimal equality ignores trailing zeros; the text must survive as well.
        assert str(got.quantity) == str(want.quantity)
        assert str(got.unit_price) == str(want.unit_price)


# -- framing and round trips ---------------------------------------------------------


def test_push_requested_is_framed_as_single_object_encoding() -> None:
    data = encode_push_requested(request_for(make_order()))
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:HEADER_SIZE] == schema_fingerprint("PushRequested")
    # The body is plain Avro binary of the standalone schema: any Avro library reads it.
    body = schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), load_schema("PushRequested"))
    assert body["order"]["order_number"] == "SO-42"


def test_push_requested_round_trip() -> None:
    order = make_order(notes="Liefern bis 12:00 \u2013 \u65e5\u672c \U0001f680")
    record = request_for(order, attempt=2)
    name, decoded = decode(encode_push_requested(record))
    assert name == "PushRequested"
    assert decoded["event_id"] == record["event_id"]
    assert decoded["org_id"] == ORG
    assert decoded["draft_order_id"] == order.id
    assert decoded["idempotency_key"] == record["idempotency_key"]
    assert decoded["attempt"] == 2
    assert decoded["occurred_at"] == APPROVED_AT + timedelta(seconds=2)
    assert decoded["occurred_at"].tzinfo is not None
    assert decoded["approved_at"] == APPROVED_AT
    assert decoded["schema_version"] == 1
    assert_same_order(draft_order_from_push_requested(decoded), order)


def test_push_result_round_trip() -> None:
    request = decode_push_requested(encode_push_requested(request_for(make_order())))
    completed = APPROVED_AT + timedelta(milliseconds=37)
    result = push_result_record(
        request,
        event_id=uuid.uuid4(),
        status="SUCCESS",
        completed_at=completed,
        connector_type="DROPZONE_JSON_V1",
        storage_key="/dropzone/in/x.json",
        erp_reference="SO/0042",
        latency_ms=31,
    )
    decoded = decode_push_result(encode_push_result(result))
    assert decoded == {**result, "schema_version": 1}
    assert decoded["completed_at"] - decoded["approved_at"] == timedelta(milliseconds=37)


def test_failed_result_with_nulls_and_a_bounded_error_message() -> None:
    request = decode_push_requested(encode_push_requested(request_for(make_order())))
    result = push_result_record(
        request,
        event_id=uuid.uuid4(),
        status="FAILED",
        completed_at=APPROVED_AT,
        error_class="ConnectorRejectedError",
        error_message="\u00e9" * 10_000,
    )
    decoded = decode_push_result(encode_push_result(result))
    assert decoded["connector_type"] is None
    assert decoded["latency_ms"] is None
    assert len(decoded["error_message"]) == 2000
    assert decoded["error_message"].endswith("\u2026")


def test_many_lines_and_long_strings() -> None:
    order = make_order(n_lines=5000, notes="x" * 1_000_000)
    decoded = decode_push_requested(encode_push_requested(request_for(order)))
    assert_same_order(draft_order_from_push_requested(decoded), order)


def test_decimals_with_many_digits_keep_their_exact_text() -> None:
    values = [
        "0.000000000000000000000000000001",
        "123456789012345678901234567890.1234567890",
        "-0",
        "0E-12",
        "1E+30",
        "-7.50",
        "1.000",
    ]
    order = make_order(n_lines=0)
    order = DraftOrder(
        id=order.id,
        org_id=ORG,
        order_number="SO-D",
        customer_code="C",
        lines=tuple(OrderLine(i, "P", Decimal(v), Decimal(v)) for i, v in enumerate(values)),
        status=DraftOrderStatus.APPROVED,
    )
    decoded = draft_order_from_push_requested(
        decode_push_requested(encode_push_requested(request_for(order)))
    )
    assert [str(line.quantity) for line in decoded.lines] == [str(Decimal(v)) for v in values]
    assert_same_order(decoded, order)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(order=orders, occurred=timestamps, attempt=st.integers(0, 2**31 - 1))
def test_any_order_survives_the_round_trip(
    order: DraftOrder, occurred: datetime, attempt: int
) -> None:
    record = push_requested_record(
        order,
        event_id=uuid.uuid4(),
        idempotency_key=generate_idempotency_key(order.org_id, order.id, attempt),
        attempt=attempt,
        occurred_at=occurred,
        approved_at=occurred,
    )
    decoded = decode_push_requested(encode_push_requested(record))
    assert decoded["occurred_at"] == occurred
    assert_same_order(draft_order_from_push_requested(decoded), order)


@settings(max_examples=50)
@given(order=orders, data=st.data())
def test_nul_anywhere_in_the_order_text_is_an_invalid_message(
    order: DraftOrder, data: st.DataObject
) -> None:
    """A request PostgreSQL cannot record goes to the DLQ instead of failing for ever."""
    names = ["order_number", "customer_code", "currency", "notes"]
    name = data.draw(st.sampled_from(names))
    poisoned = replace(order, **{name: getattr(order, name) + "\x00"})
    record = request_for(poisoned)
    decoded = decode_push_requested(encode_push_requested(record))
    with pytest.raises(InvalidMessage, match=rf"^order\.{name} contains a NUL character"):
        draft_order_from_push_requested(decoded)


def test_timestamps_in_other_zones_and_iso_text_are_accepted() -> None:
    record = request_for(make_order())
    record["occurred_at"] = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    record["approved_at"] = "2025-03-01T12:00:00.000001Z"
    record["event_id"] = str(record["event_id"]).upper()
    decoded = decode_push_requested(encode_push_requested(record))
    assert decoded["occurred_at"] == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert decoded["approved_at"] == datetime(2025, 3, 1, 12, 0, 0, 1, tzinfo=UTC)
    assert str(decoded["event_id"]) == str(record["event_id"]).lower()


# -- encoding errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"attempt": 1.5}, "attempt"),
        ({"attempt": 2**31}, "attempt"),
        ({"attempt": "1"}, "attempt"),
        ({"idempotency_key": None}, "idempotency_key"),
        ({"occurred_at": datetime(2025, 1, 1)}, "naive"),
        ({"occurred_at": "yesterday"}, "ISO-8601"),
        ({"event_id": "not-a-uuid"}, "UUID"),
        ({"order": {"order_number": "x"}}, "customer_code"),
    ],
)
def test_records_that_do_not_fit_raise_invalid_record(change: dict[str, Any], message: str) -> None:
    record = {**request_for(make_order()), **change}
    with pytest.raises(InvalidRecord, match=message) as info:
        encode_push_requested(record)
    assert isinstance(info.value, ValueError)


def test_a_missing_required_field_raises_invalid_record() -> None:
    record = request_for(make_order())
    del record["draft_order_id"]
    with pytest.raises(InvalidRecord, match="draft_order_id"):
        encode_push_requested(record)


def test_text_that_is_not_unicode_scalar_values_raises_invalid_record() -> None:
    record = request_for(make_order())
    record["order"]["notes"] = "lone surrogate \ud800"
    with pytest.raises(InvalidRecord):
        encode_push_requested(record)


def test_unknown_schema_name_and_non_mapping_records() -> None:
    with pytest.raises(UnknownSchema, match="Nope"):
        encode("Nope", {})
    with pytest.raises(InvalidRecord, match="mapping"):
        encode_push_requested([("a", 1)])  # type: ignore[arg-type]


def test_schema_version_is_written_by_the_codec() -> None:
    record = {**request_for(make_order()), "schema_version": 99}
    assert decode_push_requested(encode_push_requested(record))["schema_version"] == 1


# -- undecodable and unknown messages ------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        b"\xc3",
        b"\xc3\x01",
        b"\xc3\x01" + schema_fingerprint("PushRequested")[:5],
        b"\x00\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07",  # Confluent wire format
        b'{"event_id": "x"}',
        b"\xc3\x02" + schema_fingerprint("PushRequested") + b"\x00",
        "\xc3\x01 text, not bytes",
    ],
    ids=[
        "none",
        "empty",
        "one-byte",
        "magic-only",
        "short-header",
        "confluent",
        "json",
        "wrong-version-byte",
        "str",
    ],
)
def test_malformed_frames_are_undecodable(data: Any) -> None:
    with pytest.raises(UndecodableMessage) as info:
        decode(data)
    assert info.value.reason


def test_every_truncation_of_a_message_is_undecodable() -> None:
    data = encode_push_requested(request_for(make_order(n_lines=3)))
    for size in range(len(data)):
        with pytest.raises(UndecodableMessage):
            decode(data[:size])


def test_trailing_bytes_are_undecodable() -> None:
    data = encode_push_requested(request_for(make_order()))
    with pytest.raises(UndecodableMessage, match="1 bytes left"):
        decode(data + b"\x00")


def test_corrupt_body_is_undecodable_with_a_bounded_one_line_reason() -> None:
    data = bytearray(encode_push_requested(request_for(make_order())))
    data[HEADER_SIZE] = 0x48  # event_id: 36 characters ...
    data[HEADER_SIZE + 1 : HEADER_SIZE + 37] = b"Z" * 36  # ... that are not a UUID
    with pytest.raises(UndecodableMessage, match="Corrupt PushRequested v1 body") as info:
        decode(bytes(data))
    assert "\n" not in info.value.reason
    assert len(info.value.reason) <= MAX_REASON_LENGTH


@settings(max_examples=300)
@given(body=st.binary(max_size=300))
def test_random_bodies_under_a_known_fingerprint_are_undecodable(body: bytes) -> None:
    with pytest.raises(UndecodableMessage):
        decode(MAGIC + schema_fingerprint("PushRequested") + body)


@settings(max_examples=300)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_decode(data: bytes) -> None:
    with pytest.raises((UndecodableMessage, UnknownSchema)):
        decode(data)


def test_random_bytes_from_os_urandom() -> None:
    for _ in range(200):
        with pytest.raises((UndecodableMessage, UnknownSchema)):
            decode(os.urandom(64))


def test_unknown_fingerprint_raises_unknown_schema_with_the_fingerprint() -> None:
    data = encode_push_requested(request_for(make_order()))
    forged = MAGIC + bytes(8) + data[HEADER_SIZE:]
    with pytest.raises(UnknownSchema, match="0000000000000000") as info:
        decode(forged)
    assert info.value.fingerprint == bytes(8)
    assert not isinstance(info.value, UndecodableMessage)


def test_a_message_of_another_schema_than_expected_raises_unknown_schema() -> None:
    request = decode_push_requested(encode_push_requested(request_for(make_order())))
    result = encode_push_result(
        push_result_record(
            request, event_id=uuid.uuid4(), status="SUCCESS", completed_at=APPROVED_AT
        )
    )
    with pytest.raises(UnknownSchema, match="Expected a PushRequested message, got PushResult"):
        decode_push_requested(result)
    assert decode(result).schema_name == "PushResult"


# -- schema evolution through the codec ------------------------------------------------------

CHANNEL = {
    "name": "channel",
    "type": ["null", "string"],
    "default": None,
    "doc": "Sales channel the order came from.",
}


def v2_schema(field: dict[str, Any] = CHANNEL) -> dict[str, Any]:
    """PushRequested v2: v1 plus one new field (placed before schema_version)."""
    schema = schema_json("PushRequested")
    schema["fields"].insert(len(schema["fields"]) - 1, copy.deepcopy(field))
    return schema


def test_fastavro_resolution_between_v1_and_v2_in_both_directions() -> None:
    v1 = parse(published_json("PushRequested", 1))
    v2 = parse(v2_schema())
    record = request_for(make_order())
    old = io.BytesIO()
    schemaless_writer(old, v1, record)
    read_new = schemaless_reader(io.BytesIO(old.getvalue()), v1, v2)
    assert read_new["channel"] is None
    new = io.BytesIO()
    schemaless_writer(new, v2, {**record, "channel": "web"})
    read_old = schemaless_reader(io.BytesIO(new.getvalue()), v2, v1)
    assert "channel" not in read_old
    assert read_old["order"] == read_new["order"]


def test_a_v2_reader_decodes_v1_messages() -> None:
    v1_message = encode_push_requested(request_for(make_order()))  # written by today's code
    upgraded = AvroCodec(
        [SchemaVersion("PushRequested", 2, v2_schema())],
        [SchemaVersion.published("PushRequested", 1)],
    )
    decoded = upgraded.decode(v1_message, "PushRequested").record
    assert decoded["channel"] is None
    assert decoded["schema_version"] == 1
    v2_message = upgraded.encode("PushRequested", {**request_for(make_order()), "channel": "edi"})
    assert upgraded.decode(v2_message).record["channel"] == "edi"
    assert upgraded.decode(v2_message).record["schema_version"] == 2


def test_a_v1_reader_decodes_v2_messages_once_it_knows_v2() -> None:
    v2 = SchemaVersion("PushRequested", 2, v2_schema())
    writer = AvroCodec([v2], [SchemaVersion.published("PushRequested", 1)])
    v2_message = writer.encode("PushRequested", {**request_for(make_order()), "channel": "edi"})
    # Today's codec has never seen v2: the message is rejected, not misread ...
    with pytest.raises(UnknownSchema):
        default_codec().decode(v2_message)
    # ... while an old reader that was given the v2 writer schema reads it in v1 shape.
    old_reader = AvroCodec([SchemaVersion.published("PushRequested", 1)], [v2])
    decoded = old_reader.decode(v2_message).record
    assert "channel" not in decoded
    assert decoded["order"]["order_number"] == "SO-42"


def test_write_versions_pins_an_older_version_for_rolling_upgrades() -> None:
    upgraded = AvroCodec(
        [SchemaVersion("PushRequested", 2, v2_schema())],
        [SchemaVersion.published("PushRequested", 1)],
        write_versions={"PushRequested": 1},
    )
    message = upgraded.encode("PushRequested", {**request_for(make_order()), "channel": "edi"})
    assert message[2:HEADER_SIZE] == schema_fingerprint("PushRequested")
    assert decode_push_requested(message)["schema_version"] == 1  # today's readers read it
    with pytest.raises(ValueError, match="not known"):
        AvroCodec([SchemaVersion.current("PushRequested")], write_versions={"PushRequested": 7})


def test_an_incompatible_writer_version_is_refused_when_the_codec_is_built() -> None:
    required = {"name": "channel", "type": "string", "doc": "Sales channel."}
    with pytest.raises(ValueError, match="channel"):
        AvroCodec(
            [SchemaVersion("PushRequested", 2, v2_schema(required))],
            [SchemaVersion.published("PushRequested", 1)],
        )


def test_the_default_codec_knows_the_current_and_published_versions() -> None:
    known = default_codec().known_fingerprints()
    assert known[schema_fingerprint("PushRequested")] == ("PushRequested", 1)
    assert known[schema_fingerprint("PushResult")] == ("PushResult", 1)
    assert default_codec().schema_names == ("PushRequested", "PushResult")
