"""The pipeline's message headers as domain values (DESIGN.md §3; no bytes, no parsing here).

Every message carries seven headers: ``event_id``, ``event_type``,
``idempotency_key``, ``org_id``, ``attempt``, ``occurred_at``, ``traceparent``
(:class:`EventHeaders`). Records on a retry tier or the DLQ add a
:class:`FailureInfo`: ``original_topic``, ``original_partition``,
``original_offset``, ``error_class``, ``error_message``, ``first_failure_at``
and (retry tiers only) ``due_at``.

Turning these values into Kafka header bytes and back is the Kafka adapter's
job (``adapters.kafka.headers``); the invariants that make a value a valid
header live here, so the application cannot build a header the adapter would
refuse. Errors name the header, never echo its value (it may be garbage, or worse).

Secret-free by construction: the only free text, ``error_message``, can only be
built through :func:`bounded_error_message`, which runs the caller's scrub
function first and then caps the size.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from domain.errors import OrderFlowError
from domain.events import EVENT_HEADER_NAMES

EVENT_ID = "event_id"
EVENT_TYPE = "event_type"
IDEMPOTENCY_KEY = "idempotency_key"
ORG_ID = "org_id"
ATTEMPT = "attempt"
OCCURRED_AT = "occurred_at"
TRACEPARENT = "traceparent"
ORIGINAL_TOPIC = "original_topic"
ORIGINAL_PARTITION = "original_partition"
ORIGINAL_OFFSET = "original_offset"
ERROR_CLASS = "error_class"
ERROR_MESSAGE = "error_message"
FIRST_FAILURE_AT = "first_failure_at"
DUE_AT = "due_at"

#: Headers every pipeline message carries, in the order we write them.
REQUIRED_HEADERS: tuple[str, ...] = EVENT_HEADER_NAMES
#: Headers of a :class:`FailureInfo` (``due_at`` is optional: DLQ records have none).
FAILURE_HEADERS: tuple[str, ...] = (
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    ERROR_CLASS,
    ERROR_MESSAGE,
    FIRST_FAILURE_AT,
    DUE_AT,
)
#: Default cap on ``error_message``, in UTF-8 bytes.
MAX_ERROR_MESSAGE_BYTES = 1024
#: Hard cap on ``error_message`` whatever the caller asks for: headers are not a log store.
MAX_ERROR_MESSAGE_HARD_LIMIT = 16 * 1024
#: Cap on the short text headers; far above any legitimate value.
MAX_SHORT_VALUE_BYTES = 256
#: Appended to a truncated error message, inside the byte budget.
TRUNCATION_MARK = "…[truncated]"

# W3C Trace Context: version-traceid-parentid-flags; all-zero ids and version ff are invalid.
# Future versions may append fields, hence the optional tail for versions other than 00.
_TRACEPARENT = re.compile(
    r"^(?!ff)(?P<version>[0-9a-f]{2})-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
    r"(?P<tail>-.*)?$"
)
_ERROR_CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

Scrub = Callable[[str], str]


class HeaderError(OrderFlowError, ValueError):
    """Message headers are missing or cannot be parsed (or a value could not be one)."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"Header {key!r}: {problem}")


class MissingHeaderError(HeaderError):
    """A required header is absent (or has a null value)."""

    def __init__(self, key: str) -> None:
        super().__init__(key, "missing")


class InvalidHeaderError(HeaderError):
    """A header is present but garbled (bad UTF-8, bad number, bad timestamp, ...)."""


def truncate_utf8(text: str, max_bytes: int, mark: str = TRUNCATION_MARK) -> str:
    """Return ``text`` cut so its UTF-8 encoding fits ``max_bytes``, ending in ``mark`` if cut.

    Cuts on a character boundary (never half a multi-byte character), so the
    result always decodes.
    """
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    mark_bytes = mark.encode("utf-8")
    if len(mark_bytes) >= max_bytes:
        mark_bytes = b""
    head = encoded[: max_bytes - len(mark_bytes)]
    # errors="ignore" drops a trailing partial character left by the byte cut.
    return head.decode("utf-8", errors="ignore") + mark_bytes.decode("utf-8")


def bounded_error_message(
    text: str, scrub: Scrub | None = None, max_bytes: int = MAX_ERROR_MESSAGE_BYTES
) -> str:
    """Scrub ``text`` with ``scrub`` (before cutting: a cut could split a secret), then cap it.

    Control characters other than tab/newline are replaced, so a header never
    carries terminal escapes into a log viewer.
    """
    if not 0 < max_bytes <= MAX_ERROR_MESSAGE_HARD_LIMIT:
        raise ValueError(f"max_bytes must be between 1 and {MAX_ERROR_MESSAGE_HARD_LIMIT}")
    if scrub is not None:
        text = scrub(text)
    text = "".join(ch if ch in "\t\n" or ch.isprintable() else "\ufffd" for ch in text)
    return truncate_utf8(text, max_bytes)


@dataclass(frozen=True)
class FailureInfo:
    """Why and where a message failed: the extra headers of retry and DLQ records.

    ``original_*`` point to where the event first entered the pipeline (kept
    across retry tiers, so a DLQ record tells where to look and what to replay);
    ``first_failure_at`` is the first failure's time; ``due_at`` is when a retry
    record may be processed (``None`` on the DLQ).
    Build it with :meth:`new` so the message is scrubbed and bounded.
    """

    original_topic: str
    original_partition: int
    original_offset: int
    error_class: str
    error_message: str
    first_failure_at: datetime
    due_at: datetime | None = None

    @classmethod
    def new(
        cls,
        *,
        original_topic: str,
        original_partition: int,
        original_offset: int,
        error_class: str,
        error_message: str,
        first_failure_at: datetime,
        due_at: datetime | None = None,
        scrub: Scrub | None = None,
        max_message_bytes: int = MAX_ERROR_MESSAGE_BYTES,
    ) -> FailureInfo:
        """Return a failure record with ``error_message`` scrubbed and bounded."""
        info = cls(
            original_topic=original_topic,
            original_partition=original_partition,
            original_offset=original_offset,
            error_class=error_class,
            error_message=bounded_error_message(error_message, scrub, max_message_bytes),
            first_failure_at=first_failure_at,
            due_at=due_at,
        )
        info.validate()
        return info

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        *,
        original_topic: str,
        original_partition: int,
        original_offset: int,
        first_failure_at: datetime,
        due_at: datetime | None = None,
        scrub: Scrub | None = None,
    ) -> FailureInfo:
        """Return a failure record for ``exc``: its class name and its scrubbed, bounded text."""
        return cls.new(
            original_topic=original_topic,
            original_partition=original_partition,
            original_offset=original_offset,
            error_class=type(exc).__name__,
            error_message=str(exc),
            first_failure_at=first_failure_at,
            due_at=due_at,
            scrub=scrub,
        )

    def repeated(
        self,
        *,
        error_class: str,
        error_message: str,
        due_at: datetime | None,
        scrub: Scrub | None = None,
        max_message_bytes: int = MAX_ERROR_MESSAGE_BYTES,
    ) -> FailureInfo:
        """Return the record of a later failure of the same event.

        ``original_*`` and ``first_failure_at`` are kept (they describe where and
        when the trouble began); the error and ``due_at`` are the new ones.
        """
        return FailureInfo.new(
            original_topic=self.original_topic,
            original_partition=self.original_partition,
            original_offset=self.original_offset,
            error_class=error_class,
            error_message=error_message,
            first_failure_at=self.first_failure_at,
            due_at=due_at,
            scrub=scrub,
            max_message_bytes=max_message_bytes,
        )

    def validate(self) -> None:
        """Raise :class:`InvalidHeaderError` if a field could not round-trip as a header."""
        _check_short(ORIGINAL_TOPIC, self.original_topic)
        _check_short(ERROR_CLASS, self.error_class)
        if not _ERROR_CLASS.match(self.error_class):
            raise InvalidHeaderError(ERROR_CLASS, "must be a (dotted) class name")
        if self.original_partition < 0:
            raise InvalidHeaderError(ORIGINAL_PARTITION, "must not be negative")
        if self.original_offset < 0:
            raise InvalidHeaderError(ORIGINAL_OFFSET, "must not be negative")
        if len(self.error_message.encode("utf-8")) > MAX_ERROR_MESSAGE_HARD_LIMIT:
            # FailureInfo(...) built directly bypasses new(); still refuse unbounded text.
            raise InvalidHeaderError(
                ERROR_MESSAGE, f"longer than {MAX_ERROR_MESSAGE_HARD_LIMIT} bytes"
            )
        _check_aware(FIRST_FAILURE_AT, self.first_failure_at)
        if self.due_at is not None:
            _check_aware(DUE_AT, self.due_at)


@dataclass(frozen=True)
class EventHeaders:
    """The headers of one pipeline message, typed."""

    event_id: uuid.UUID
    event_type: str
    idempotency_key: str
    org_id: uuid.UUID
    attempt: int
    occurred_at: datetime
    traceparent: str
    failure: FailureInfo | None = None

    def validate(self) -> None:
        """Raise :class:`InvalidHeaderError` if a field could not round-trip as a header."""
        _check_short(EVENT_TYPE, self.event_type)
        _check_short(IDEMPOTENCY_KEY, self.idempotency_key)
        if self.attempt < 0:
            raise InvalidHeaderError(ATTEMPT, "must not be negative")
        _check_aware(OCCURRED_AT, self.occurred_at)
        if not _TRACEPARENT.match(self.traceparent) or (
            self.traceparent.startswith("00-") and len(self.traceparent) != 55
        ):
            raise InvalidHeaderError(TRACEPARENT, "not a W3C traceparent")
        if self.failure is not None:
            self.failure.validate()

    def with_failure(self, failure: FailureInfo, *, attempt: int | None = None) -> EventHeaders:
        """Return a copy carrying ``failure`` (and ``attempt``, if given) for a retry/DLQ record."""
        return replace(self, failure=failure, attempt=self.attempt if attempt is None else attempt)

    def without_failure(self) -> EventHeaders:
        """Return a copy without failure headers (e.g. for a DLQ replay to the requests topic)."""
        return replace(self, failure=None)


def _check_short(key: str, value: str) -> None:
    if not value:
        raise InvalidHeaderError(key, "must not be empty")
    if len(value.encode("utf-8")) > MAX_SHORT_VALUE_BYTES:
        raise InvalidHeaderError(key, f"longer than {MAX_SHORT_VALUE_BYTES} bytes")


def _check_aware(key: str, value: datetime) -> None:
    if value.tzinfo is None:
        raise InvalidHeaderError(key, "timestamp has no time zone")
