"""Kafka header bytes of the pipeline's messages: building and parsing (DESIGN.md §3).

The values themselves (:class:`~domain.headers.EventHeaders`,
:class:`~domain.headers.FailureInfo`), their names and their invariants are
domain values (``domain.headers``, re-exported here); this module turns them
into Kafka header pairs and back.

Values travel as UTF-8 bytes; timestamps as ISO 8601 UTC with a ``Z`` (the
format the outbox already uses). Parsing turns them into an immutable
:class:`EventHeaders` or raises :class:`~domain.headers.HeaderError`
naming the header, never echoing its value (it may be garbage, or worse).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from domain.headers import (
    ATTEMPT,
    DUE_AT,
    ERROR_CLASS,
    ERROR_MESSAGE,
    EVENT_ID,
    EVENT_TYPE,
    FAILURE_HEADERS,
    FIRST_FAILURE_AT,
    IDEMPOTENCY_KEY,
    MAX_ERROR_MESSAGE_BYTES,
    MAX_ERROR_MESSAGE_HARD_LIMIT,
    MAX_SHORT_VALUE_BYTES,
    OCCURRED_AT,
    ORG_ID,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    REQUIRED_HEADERS,
    TRACEPARENT,
    TRUNCATION_MARK,
    EventHeaders,
    FailureInfo,
    InvalidHeaderError,
    MissingHeaderError,
    Scrub,
    bounded_error_message,
    truncate_utf8,
)

__all__ = [
    "ATTEMPT",
    "DUE_AT",
    "ERROR_CLASS",
    "ERROR_MESSAGE",
    "EVENT_ID",
    "EVENT_TYPE",
    "FAILURE_HEADERS",
    "FIRST_FAILURE_AT",
    "IDEMPOTENCY_KEY",
    "MAX_ERROR_MESSAGE_BYTES",
    "MAX_ERROR_MESSAGE_HARD_LIMIT",
    "MAX_SHORT_VALUE_BYTES",
    "OCCURRED_AT",
    "ORG_ID",
    "ORIGINAL_OFFSET",
    "ORIGINAL_PARTITION",
    "ORIGINAL_TOPIC",
    "REQUIRED_HEADERS",
    "TRACEPARENT",
    "TRUNCATION_MARK",
    "EventHeaders",
    "FailureInfo",
    "RawHeaders",
    "Scrub",
    "bounded_error_message",
    "build_failure_headers",
    "build_headers",
    "due_at_of",
    "format_timestamp",
    "header_values",
    "parse_failure_headers",
    "parse_headers",
    "replace_failure_headers",
    "truncate_utf8",
]

RawHeaders = Iterable[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None


def format_timestamp(value: datetime) -> str:
    """Return an aware datetime as ISO 8601 UTC with a ``Z`` suffix."""
    if value.tzinfo is None:
        raise ValueError("Timestamps in headers must be timezone-aware")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build_headers(headers: EventHeaders) -> list[tuple[str, bytes]]:
    """Validate ``headers`` and return them as ``(key, UTF-8 bytes)`` pairs for ``produce``."""
    headers.validate()
    values = [
        (EVENT_ID, str(headers.event_id)),
        (EVENT_TYPE, headers.event_type),
        (IDEMPOTENCY_KEY, headers.idempotency_key),
        (ORG_ID, str(headers.org_id)),
        (ATTEMPT, str(headers.attempt)),
        (OCCURRED_AT, format_timestamp(headers.occurred_at)),
        (TRACEPARENT, headers.traceparent),
    ]
    pairs = [(key, value.encode("utf-8")) for key, value in values]
    if headers.failure is not None:
        pairs += build_failure_headers(headers.failure)
    return pairs


def build_failure_headers(failure: FailureInfo) -> list[tuple[str, bytes]]:
    """Validate ``failure`` and return its headers as ``(key, UTF-8 bytes)`` pairs."""
    failure.validate()
    values = [
        (ORIGINAL_TOPIC, failure.original_topic),
        (ORIGINAL_PARTITION, str(failure.original_partition)),
        (ORIGINAL_OFFSET, str(failure.original_offset)),
        (ERROR_CLASS, failure.error_class),
        (ERROR_MESSAGE, failure.error_message),
        (FIRST_FAILURE_AT, format_timestamp(failure.first_failure_at)),
    ]
    if failure.due_at is not None:
        values.append((DUE_AT, format_timestamp(failure.due_at)))
    return [(key, value.encode("utf-8")) for key, value in values]


def replace_failure_headers(
    raw: RawHeaders, failure: FailureInfo
) -> list[tuple[str, bytes | None]]:
    """Return ``raw`` with its failure headers (if any) replaced by ``failure``'s.

    For dead-lettering a message whose own headers may be missing or garbled
    (a poison message from another producer): every other header is kept
    byte-for-byte, so the DLQ record shows what arrived, plus why it failed.
    """
    pairs = raw.items() if isinstance(raw, Mapping) else (raw or ())
    kept: list[tuple[str, bytes | None]] = [
        (key, value.encode("utf-8") if isinstance(value, str) else value)
        for key, value in pairs
        if key not in FAILURE_HEADERS
    ]
    return kept + list(build_failure_headers(failure))


def parse_failure_headers(raw: RawHeaders) -> FailureInfo | None:
    """Parse only the failure headers of ``raw`` (None if it has none).

    Works on DLQ records of poison messages, whose standard headers may be
    missing or garbled. Raises :class:`HeaderError` for partial or garbled
    failure headers.
    """
    return _parse_failure(header_values(raw, only=FAILURE_HEADERS))


def header_values(raw: RawHeaders, *, only: Iterable[str] | None = None) -> dict[str, str]:
    """Decode raw headers into ``{key: text}``, refusing bad UTF-8 and conflicting duplicates.

    Kafka allows a key to repeat; an identical repeat is harmless, a different
    value makes the message ambiguous and is refused. ``None`` values count as
    absent.
    """
    pairs = raw.items() if isinstance(raw, Mapping) else (raw or ())
    wanted = frozenset(only) if only is not None else None
    decoded: dict[str, str] = {}
    for key, value in pairs:
        if value is None or (wanted is not None and key not in wanted):
            continue
        if isinstance(value, bytes):
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidHeaderError(key, "not valid UTF-8") from None
        else:
            text = value
        if key in decoded and decoded[key] != text:
            raise InvalidHeaderError(key, "appears more than once with different values")
        decoded[key] = text
    return decoded


def parse_headers(raw: RawHeaders) -> EventHeaders:
    """Parse Kafka message headers (list of pairs, or a mapping) into :class:`EventHeaders`.

    Accepts ``bytes`` or ``str`` values, so the outbox's ``dict[str, str]`` parses
    too. Unknown extra headers are ignored (other producers may add their own).
    Raises :class:`MissingHeaderError` / :class:`InvalidHeaderError`.
    """
    values = header_values(raw)
    for key in REQUIRED_HEADERS:
        if not values.get(key):
            raise MissingHeaderError(key)
    failure = _parse_failure(values)
    parsed = EventHeaders(
        event_id=_parse_uuid(EVENT_ID, values[EVENT_ID]),
        event_type=values[EVENT_TYPE],
        idempotency_key=values[IDEMPOTENCY_KEY],
        org_id=_parse_uuid(ORG_ID, values[ORG_ID]),
        attempt=_parse_int(ATTEMPT, values[ATTEMPT]),
        occurred_at=_parse_timestamp(OCCURRED_AT, values[OCCURRED_AT]),
        traceparent=values[TRACEPARENT],
        failure=failure,
    )
    parsed.validate()
    return parsed


def due_at_of(raw: Iterable[tuple[str, bytes | None]]) -> datetime | None:
    """The ``due_at`` of a retry record's raw headers, or None (absent, garbled or naive).

    Lenient on purpose: the worker's loop only needs it to hold a record back
    until due; a garbled header is the handler's to dead-letter. The last
    ``due_at`` pair counts (as a ``dict`` of the pairs would have it).
    """
    raw_value = dict(raw).get(DUE_AT)
    if not raw_value:
        return None
    try:
        value = datetime.fromisoformat(raw_value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if value.tzinfo is not None else None


def _parse_failure(values: Mapping[str, str]) -> FailureInfo | None:
    if not any(key in values for key in FAILURE_HEADERS):
        return None
    for key in FAILURE_HEADERS:
        if key != DUE_AT and key not in values:
            raise MissingHeaderError(key)
    failure = FailureInfo(
        original_topic=values[ORIGINAL_TOPIC],
        original_partition=_parse_int(ORIGINAL_PARTITION, values[ORIGINAL_PARTITION]),
        original_offset=_parse_int(ORIGINAL_OFFSET, values[ORIGINAL_OFFSET]),
        error_class=values[ERROR_CLASS],
        error_message=values[ERROR_MESSAGE],
        first_failure_at=_parse_timestamp(FIRST_FAILURE_AT, values[FIRST_FAILURE_AT]),
        due_at=_parse_timestamp(DUE_AT, values[DUE_AT]) if DUE_AT in values else None,
    )
    failure.validate()
    return failure


def _parse_uuid(key: str, text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidHeaderError(key, "not a UUID") from None


def _parse_int(key: str, text: str) -> int:
    # Plain ASCII digits only: int() would also take "+1", " 1", "1_000" or non-ASCII digits.
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise InvalidHeaderError(key, "not a non-negative integer")
    return int(text)


def _parse_timestamp(key: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidHeaderError(key, "not an ISO 8601 timestamp") from None
    if value.tzinfo is None:
        raise InvalidHeaderError(key, "timestamp has no time zone")
    return value.astimezone(UTC)
