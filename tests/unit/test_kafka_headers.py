"""Pipeline headers: build/parse round trip, failure extras, clear errors, bounded text."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.kafka.errors import HeaderError, InvalidHeaderError, MissingHeaderError
from adapters.kafka.headers import (
    FAILURE_HEADERS,
    MAX_ERROR_MESSAGE_BYTES,
    REQUIRED_HEADERS,
    TRUNCATION_MARK,
    EventHeaders,
    FailureInfo,
    bounded_error_message,
    build_failure_headers,
    build_headers,
    format_timestamp,
    parse_failure_headers,
    parse_headers,
    replace_failure_headers,
    truncate_utf8,
)
from adapters.kafka.record_codec import KafkaAvroRecordCodec
from domain.model import DraftOrder
from domain.records import EVENT_HEADER_NAMES
from domain.redaction import scrub
from producer.approval import build_push_requested

ORG = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
EVENT = uuid.UUID("11111111-2222-4333-8444-555555555555")
T0 = datetime(2025, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def event_headers(**changes: object) -> EventHeaders:
    base = EventHeaders(
        event_id=EVENT,
        event_type="PushRequested",
        idempotency_key="push:0f0e:1111:0",
        org_id=ORG,
        attempt=0,
        occurred_at=T0,
        traceparent=TRACE,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def failure(**changes: object) -> FailureInfo:
    base = FailureInfo.new(
        original_topic="of.push.requests",
        original_partition=3,
        original_offset=1234567890123,
        error_class="ConnectorTransientError",
        error_message="SFTP timed out",
        first_failure_at=T0 + timedelta(seconds=1),
        due_at=T0 + timedelta(seconds=3),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def as_dict(pairs: list[tuple[str, bytes]]) -> dict[str, bytes]:
    return dict(pairs)


def test_required_names_match_the_domain() -> None:
    assert REQUIRED_HEADERS == EVENT_HEADER_NAMES


def test_build_gives_utf8_bytes_in_a_fixed_order() -> None:
    pairs = build_headers(event_headers())
    assert [k for k, _ in pairs] == list(REQUIRED_HEADERS)
    assert all(isinstance(v, bytes) for _, v in pairs)
    values = as_dict(pairs)
    assert values["event_id"] == str(EVENT).encode()
    assert values["org_id"] == str(ORG).encode()
    assert values["attempt"] == b"0"
    assert values["occurred_at"] == b"2025-03-04T05:06:07.891234Z"
    assert values["traceparent"] == TRACE.encode()


def test_round_trip_without_failure() -> None:
    headers = event_headers(attempt=2)
    assert parse_headers(build_headers(headers)) == headers
    # The outbox keeps the text of exactly the Kafka headers the relay will publish.
    text = KafkaAvroRecordCodec().outbox_headers(headers)
    assert [(k, v.encode()) for k, v in text.items()] == build_headers(headers)


def test_round_trip_with_failure() -> None:
    headers = event_headers(attempt=1).with_failure(failure())
    pairs = build_headers(headers)
    assert [k for k, _ in pairs] == list(REQUIRED_HEADERS) + list(FAILURE_HEADERS)
    parsed = parse_headers(pairs)
    assert parsed == headers
    assert parsed.failure is not None
    assert parsed.failure.original_offset == 1234567890123
    assert parsed.without_failure() == event_headers(attempt=1)


def test_dlq_failure_has_no_due_at() -> None:
    headers = event_headers().with_failure(failure(due_at=None), attempt=3)
    pairs = build_headers(headers)
    assert "due_at" not in as_dict(pairs)
    parsed = parse_headers(pairs)
    assert parsed.attempt == 3
    assert parsed.failure is not None and parsed.failure.due_at is None


def test_parses_the_outbox_string_headers() -> None:
    order = DraftOrder(id=uuid.uuid4(), org_id=ORG, order_number="SO-1", customer_code="C1")
    event = build_push_requested(order, occurred_at=T0)
    parsed = parse_headers(event.headers)
    assert parsed.event_id == event.event_id
    assert parsed.org_id == ORG
    assert parsed.attempt == 0
    assert parsed.occurred_at == T0
    assert {k: v.decode() for k, v in build_headers(parsed)} == event.headers


def test_timestamps_are_normalised_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    headers = event_headers(occurred_at=datetime(2025, 1, 1, 13, 0, tzinfo=cet))
    assert as_dict(build_headers(headers))["occurred_at"] == b"2025-01-01T12:00:00Z"
    assert parse_headers(build_headers(headers)).occurred_at == datetime(2025, 1, 1, 12, tzinfo=UTC)
    parsed = parse_headers(
        {**as_dict(build_headers(headers)), "occurred_at": b"2025-01-01T13:00:00+01:00"}
    )
    assert parsed.occurred_at == datetime(2025, 1, 1, 12, tzinfo=UTC)


def test_extra_headers_are_ignored_and_identical_duplicates_accepted() -> None:
    pairs = build_headers(event_headers())
    pairs += [("x-other", b"ok"), ("attempt", b"0")]
    assert parse_headers(pairs) == event_headers()


@pytest.mark.parametrize("key", REQUIRED_HEADERS)
def test_missing_required_header(key: str) -> None:
    pairs = [(k, v) for k, v in build_headers(event_headers()) if k != key]
    with pytest.raises(MissingHeaderError) as info:
        parse_headers(pairs)
    assert info.value.key == key
    assert str(info.value) == f"Header {key!r}: missing"


@pytest.mark.parametrize("key", REQUIRED_HEADERS)
def test_null_or_empty_value_counts_as_missing(key: str) -> None:
    values: dict[str, bytes | None] = dict(build_headers(event_headers()))
    values[key] = None
    with pytest.raises(MissingHeaderError):
        parse_headers(values)
    values[key] = b""
    with pytest.raises(MissingHeaderError):
        parse_headers(values)


def test_no_headers_at_all() -> None:
    with pytest.raises(MissingHeaderError, match="event_id"):
        parse_headers(None)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("event_id", b"not-a-uuid", "not a UUID"),
        ("org_id", b"1234", "not a UUID"),
        ("attempt", b"-1", "non-negative integer"),
        ("attempt", b"+1", "non-negative integer"),
        ("attempt", b" 1", "non-negative integer"),
        ("attempt", b"1_0", "non-negative integer"),
        ("attempt", "\u0661".encode(), "non-negative integer"),
        ("attempt", b"99999999999999999999", "non-negative integer"),
        ("occurred_at", b"yesterday", "ISO 8601"),
        ("occurred_at", b"2025-01-01T12:00:00", "no time zone"),
        ("traceparent", b"00-abc-def-01", "W3C"),
        ("traceparent", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01", "W3C"),
        ("traceparent", b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "W3C"),
        ("traceparent", TRACE.encode() + b"-extra", "W3C"),
        ("event_type", b"x" * 257, "longer than"),
        ("event_id", b"\xff\xfe", "UTF-8"),
    ],
)
def test_garbled_header(key: str, value: bytes, problem: str) -> None:
    values = as_dict(build_headers(event_headers()))
    values[key] = value
    with pytest.raises(InvalidHeaderError, match=problem) as info:
        parse_headers(values)
    assert info.value.key == key
    # The offending value is never echoed (it may be anything).
    if len(value) > 4:
        assert value.decode("utf-8", "replace") not in str(info.value)


def test_future_traceparent_version_with_extra_fields_is_accepted() -> None:
    future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever"
    values = as_dict(build_headers(event_headers()))
    values["traceparent"] = future.encode()
    assert parse_headers(values).traceparent == future


def test_conflicting_duplicates_are_refused() -> None:
    pairs = [*build_headers(event_headers()), ("org_id", str(uuid.uuid4()).encode())]
    with pytest.raises(InvalidHeaderError, match="more than once"):
        parse_headers(pairs)


@pytest.mark.parametrize("key", [k for k in FAILURE_HEADERS if k != "due_at"])
def test_partial_failure_headers(key: str) -> None:
    pairs = [(k, v) for k, v in build_headers(event_headers().with_failure(failure())) if k != key]
    with pytest.raises(MissingHeaderError) as info:
        parse_headers(pairs)
    assert info.value.key == key


def test_a_lone_failure_header_requires_the_rest() -> None:
    pairs = [*build_headers(event_headers()), ("due_at", b"2025-01-01T00:00:00Z")]
    with pytest.raises(MissingHeaderError, match="original_topic"):
        parse_headers(pairs)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("original_partition", b"x", "integer"),
        ("original_offset", b"-5", "integer"),
        ("first_failure_at", b"soon", "ISO 8601"),
        ("due_at", b"2025-01-01", "no time zone"),
        ("error_class", b"rm -rf /", "class name"),
    ],
)
def test_garbled_failure_header(key: str, value: bytes, problem: str) -> None:
    values = as_dict(build_headers(event_headers().with_failure(failure())))
    values[key] = value
    with pytest.raises(InvalidHeaderError, match=problem):
        parse_headers(values)


def test_header_errors_are_value_errors() -> None:
    assert issubclass(HeaderError, ValueError)


def test_build_refuses_invalid_values() -> None:
    with pytest.raises(InvalidHeaderError, match="attempt"):
        build_headers(event_headers(attempt=-1))
    with pytest.raises(InvalidHeaderError, match="idempotency_key"):
        build_headers(event_headers(idempotency_key=""))
    with pytest.raises(InvalidHeaderError, match="occurred_at"):
        build_headers(event_headers(occurred_at=datetime(2025, 1, 1)))
    with pytest.raises(InvalidHeaderError, match="traceparent"):
        build_headers(event_headers(traceparent="nope"))


# --- bounded, scrubbed error text ---------------------------------------------------------


def test_short_message_is_unchanged() -> None:
    assert bounded_error_message("boom") == "boom"


def test_long_message_is_cut_to_the_byte_budget() -> None:
    text = bounded_error_message("x" * 5000)
    assert len(text.encode()) == MAX_ERROR_MESSAGE_BYTES
    assert text.endswith(TRUNCATION_MARK)


def test_cut_never_splits_a_multibyte_character() -> None:
    # "€" is 3 bytes in UTF-8: a byte cut lands inside a character for 2 of 3 offsets.
    for pad in range(3):
        text = truncate_utf8("a" * pad + "€" * 600, 100)
        encoded = text.encode("utf-8")
        assert len(encoded) <= 100
        assert encoded.decode("utf-8") == text
        assert text.endswith(TRUNCATION_MARK)


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_truncate_property(text: str, limit: int) -> None:
    out = truncate_utf8(text, limit)
    assert len(out.encode("utf-8")) <= limit
    if len(text.encode("utf-8")) <= limit:
        assert out == text
    else:
        body = out.removesuffix(TRUNCATION_MARK)
        assert text.startswith(body)


def test_scrub_runs_before_the_cut() -> None:
    secret = "hunter2-very-secret"
    # The secret straddles the cut: cutting first would leave a prefix of it behind.
    text = "e" * 1000 + secret + "tail"
    out = bounded_error_message(text, lambda t: scrub(t, [secret]))
    assert "hunter" not in out
    failure_info = FailureInfo.from_exception(
        RuntimeError(f"login as bob:{secret} refused"),
        original_topic="of.push.requests",
        original_partition=0,
        original_offset=0,
        first_failure_at=T0,
        scrub=lambda t: scrub(t, [secret]),
    )
    assert failure_info.error_class == "RuntimeError"
    assert secret not in failure_info.error_message
    assert secret.encode() not in b"".join(
        v for _, v in build_headers(event_headers().with_failure(failure_info))
    )


def test_control_characters_are_neutralised() -> None:
    out = bounded_error_message("red \x1b[31mALERT\x1b[0m\r\nnext\tline\x00")
    assert "\x1b" not in out and "\x00" not in out and "\r" not in out
    assert "\n" in out and "\t" in out


def test_custom_limit_is_bounded() -> None:
    assert len(bounded_error_message("y" * 500, max_bytes=64).encode()) == 64
    with pytest.raises(ValueError, match="max_bytes"):
        bounded_error_message("y", max_bytes=10**6)


def test_failure_info_built_directly_is_still_bounded() -> None:
    with pytest.raises(InvalidHeaderError, match="error_message"):
        build_headers(event_headers().with_failure(failure(error_message="z" * 20_000)))


def test_format_timestamp_requires_aware() -> None:
    assert format_timestamp(T0) == "2025-03-04T05:06:07.891234Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2025, 1, 1))


# --- failure headers on their own (poison messages, repeated failures) --------------------


def test_repeated_failure_keeps_origin_and_first_failure() -> None:
    first = failure()
    later = first.repeated(
        error_class="ConnectorTransientError",
        error_message="still down: token=abc",
        due_at=T0 + timedelta(seconds=7),
        scrub=lambda t: t.replace("abc", "***"),
    )
    assert (later.original_topic, later.original_partition, later.original_offset) == (
        first.original_topic,
        first.original_partition,
        first.original_offset,
    )
    assert later.first_failure_at == first.first_failure_at
    assert later.due_at == T0 + timedelta(seconds=7)
    assert later.error_message == "still down: token=***"


def test_poison_message_keeps_its_headers_and_gains_failure_headers() -> None:
    arrived = [("event_id", b"\xff garbled"), ("x-custom", None), ("error_class", b"Old")]
    reason = FailureInfo.new(
        original_topic="of.push.requests",
        original_partition=0,
        original_offset=9,
        error_class="UndecodableMessage",
        error_message="not Avro",
        first_failure_at=T0,
    )
    out = replace_failure_headers(arrived, reason)
    assert out[:2] == [("event_id", b"\xff garbled"), ("x-custom", None)]
    assert [k for k, _ in out[2:]] == [k for k in FAILURE_HEADERS if k != "due_at"]
    # The standard headers are garbled, the failure headers still parse.
    with pytest.raises(HeaderError):
        parse_headers(out)
    assert parse_failure_headers(out) == reason
    assert parse_failure_headers(build_headers(event_headers())) is None
    assert build_failure_headers(reason) == build_headers(event_headers().with_failure(reason))[7:]


def test_replace_failure_headers_accepts_outbox_strings() -> None:
    out = replace_failure_headers({"event_id": str(EVENT)}, failure())
    assert out[0] == ("event_id", str(EVENT).encode())
