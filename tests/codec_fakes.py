"""Fakes of ``domain.messaging.RecordCodec``.

* :class:`JsonRecordCodec` - a complete second wire format: UTF-8 text headers
  and JSON values (the domain's ``order_to_json`` for the order). It passes the
  record codec contract (tests/contract/record_codec_contract.py) like the
  Kafka/Avro adapter does, so the contract says what the port promises rather
  than what Avro happens to do.
* :class:`RefusingCodec` - understands nothing (the handler must dead-letter a
  record without asking the codec for more).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

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
    OCCURRED_AT,
    ORG_ID,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    TRACEPARENT,
    EventHeaders,
    FailureInfo,
    HeaderError,
    InvalidHeaderError,
    MissingHeaderError,
)
from domain.idempotency import parse_idempotency_key
from domain.messaging import HeaderPairs, InboundMessage, PushRequest, Undecodable
from domain.model import DraftOrder, DraftOrderStatus, PushStatus
from domain.records import order_from_json, order_to_json

#: The ``schema`` field of the fake's request and result values.
REQUEST_SCHEMA = "fake.PushRequested/1"
RESULT_SCHEMA = "fake.PushResult/1"


def header_text(headers: EventHeaders) -> dict[str, str]:
    """The fake's text headers of ``headers`` (validated first)."""
    headers.validate()
    text = {
        EVENT_ID: str(headers.event_id),
        EVENT_TYPE: headers.event_type,
        IDEMPOTENCY_KEY: headers.idempotency_key,
        ORG_ID: str(headers.org_id),
        ATTEMPT: str(headers.attempt),
        OCCURRED_AT: headers.occurred_at.isoformat(),
        TRACEPARENT: headers.traceparent,
    }
    failure = headers.failure
    if failure is not None:
        text.update(failure_text(failure))
    return text


def failure_text(failure: FailureInfo) -> dict[str, str]:
    """The fake's text headers of ``failure``."""
    text = {
        ORIGINAL_TOPIC: failure.original_topic,
        ORIGINAL_PARTITION: str(failure.original_partition),
        ORIGINAL_OFFSET: str(failure.original_offset),
        ERROR_CLASS: failure.error_class,
        ERROR_MESSAGE: failure.error_message,
        FIRST_FAILURE_AT: failure.first_failure_at.isoformat(),
    }
    if failure.due_at is not None:
        text[DUE_AT] = failure.due_at.isoformat()
    return text


def request_value(
    headers: EventHeaders, order_json: Mapping[str, Any], **fields: Any
) -> dict[str, Any]:
    """The fake's ``PushRequested`` value (a JSON object) for ``headers`` and an order."""
    return {
        "schema": REQUEST_SCHEMA,
        "event_id": str(headers.event_id),
        "idempotency_key": headers.idempotency_key,
        "attempt": headers.attempt,
        "occurred_at": headers.occurred_at.isoformat(),
        "order": dict(order_json),
        **fields,
    }


class JsonRecordCodec:
    """Text headers and JSON values (see the module docstring); pure and thread-safe."""

    def decode_request(self, message: InboundMessage) -> PushRequest | Undecodable:
        """Headers first (named when missing or garbled), then the JSON value."""
        try:
            headers = _parse(message.header_items)
        except HeaderError as exc:
            return Undecodable(type(exc).__name__, str(exc))
        failure = headers.failure
        if not message.value:
            return Undecodable("UndecodableMessage", "no value, or an empty one", failure)
        try:
            record = json.loads(message.value)
        except (UnicodeDecodeError, ValueError):
            return Undecodable("UndecodableMessage", "the value is not JSON", failure)
        if not isinstance(record, dict) or record.get("schema") != REQUEST_SCHEMA:
            return Undecodable("UnknownSchema", f"not a {REQUEST_SCHEMA} value", failure)
        try:
            order = order_from_json(record["order"])
            attempt, key = record["attempt"], record["idempotency_key"]
            if not isinstance(attempt, int) or attempt < 0 or not isinstance(key, str):
                raise ValueError("attempt or idempotency_key")
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            return Undecodable("InvalidMessage", f"bad field: {type(exc).__name__}", failure)
        try:
            push_round = parse_idempotency_key(key).push_round
        except ValueError:
            push_round = 0
        return PushRequest(
            headers=headers,
            order=order,
            attempt=attempt,
            push_round=push_round,
            idempotency_key=key,
            record=record,
        )

    def due_at(self, message: InboundMessage) -> datetime | None:
        """The last ``due_at`` pair as an aware time, else None."""
        raw = dict(message.header_items).get(DUE_AT)
        try:
            due = datetime.fromisoformat(raw.decode("utf-8")) if raw is not None else None
        except (UnicodeDecodeError, ValueError):
            return None
        return due if due is not None and due.tzinfo is not None else None

    def outbox_headers(self, headers: EventHeaders) -> dict[str, str]:
        """The text headers of ``headers``."""
        return header_text(headers)

    def dead_letter_headers(self, message: InboundMessage, failure: FailureInfo) -> HeaderPairs:
        """``message``'s pairs without any failure header, then ``failure``'s."""
        kept = [(k, v) for k, v in message.header_items if k not in FAILURE_HEADERS]
        return kept + [(k, v.encode("utf-8")) for k, v in failure_text(failure).items()]

    def request_payload(self, request: PushRequest) -> dict[str, Any]:
        """The request's value as decoded."""
        return dict(request.record)

    def retry_payload(
        self,
        request: PushRequest,
        *,
        event_id: uuid.UUID,
        idempotency_key: str,
        attempt: int,
        occurred_at: datetime,
    ) -> dict[str, Any]:
        """The request's value with the next attempt's fields."""
        return {
            **request.record,
            "event_id": str(event_id),
            "idempotency_key": idempotency_key,
            "attempt": attempt,
            "occurred_at": occurred_at.isoformat(),
        }

    def result_payload(
        self,
        request: PushRequest,
        *,
        event_id: uuid.UUID,
        status: PushStatus,
        completed_at: datetime,
        connector_type: str | None,
        storage_key: str | None,
        erp_reference: str | None,
        error_class: str | None,
        error_message: str | None,
        latency_ms: int | None,
    ) -> dict[str, Any]:
        """The result value answering ``request``."""
        return {
            "schema": RESULT_SCHEMA,
            "event_id": str(event_id),
            "request_event_id": request.record["event_id"],
            "org_id": str(request.order.org_id),
            "draft_order_id": str(request.order.id),
            "idempotency_key": request.idempotency_key,
            "status": status.value,
            "attempt": request.attempt,
            "connector_type": connector_type,
            "storage_key": storage_key,
            "erp_reference": erp_reference,
            "error_class": error_class,
            "error_message": error_message,
            "latency_ms": latency_ms,
            "completed_at": completed_at.isoformat(),
        }


def encode_request(
    headers: EventHeaders, order: DraftOrder
) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    """The fake producer side: value and header pairs of a request for ``order``."""
    if order.status is not DraftOrderStatus.APPROVED:
        raise ValueError("a push request carries an APPROVED order")
    value = json.dumps(request_value(headers, order_to_json(order))).encode("utf-8")
    return value, tuple((k, v.encode("utf-8")) for k, v in header_text(headers).items())


def _parse(items: tuple[tuple[str, bytes | None], ...]) -> EventHeaders:
    pairs = dict(items)  # the last pair of a key counts
    failure = None
    if any(pairs.get(key) is not None for key in FAILURE_HEADERS if key != DUE_AT):
        due = _text(pairs, DUE_AT, required=False)
        failure = FailureInfo(
            original_topic=_text(pairs, ORIGINAL_TOPIC),
            original_partition=_int(pairs, ORIGINAL_PARTITION),
            original_offset=_int(pairs, ORIGINAL_OFFSET),
            error_class=_text(pairs, ERROR_CLASS),
            error_message=_text(pairs, ERROR_MESSAGE),
            first_failure_at=_time(pairs, FIRST_FAILURE_AT),
            due_at=_time(pairs, DUE_AT) if due else None,
        )
    headers = EventHeaders(
        event_id=_uuid(pairs, EVENT_ID),
        event_type=_text(pairs, EVENT_TYPE),
        idempotency_key=_text(pairs, IDEMPOTENCY_KEY),
        org_id=_uuid(pairs, ORG_ID),
        attempt=_int(pairs, ATTEMPT),
        occurred_at=_time(pairs, OCCURRED_AT),
        traceparent=_text(pairs, TRACEPARENT),
        failure=failure,
    )
    headers.validate()
    return headers


def _text(pairs: Mapping[str, bytes | None], key: str, *, required: bool = True) -> str:
    raw = pairs.get(key)
    if raw is None or raw == b"":
        if required:
            raise MissingHeaderError(key)
        return ""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidHeaderError(key, "not UTF-8") from None


def _uuid(pairs: Mapping[str, bytes | None], key: str) -> uuid.UUID:
    text = _text(pairs, key)  # a MissingHeaderError is a ValueError too: not caught below
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidHeaderError(key, "not a UUID") from None


def _int(pairs: Mapping[str, bytes | None], key: str) -> int:
    text = _text(pairs, key)
    if not text.isascii() or not text.isdigit():
        raise InvalidHeaderError(key, "not a non-negative integer")
    return int(text)


def _time(pairs: Mapping[str, bytes | None], key: str) -> datetime:
    text = _text(pairs, key)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidHeaderError(key, "not an ISO-8601 time") from None
    if value.tzinfo is None:
        raise InvalidHeaderError(key, "timestamp has no time zone")
    return value


class RefusingCodec:
    """A fake of the port that understands nothing (the handler must not need more)."""

    def decode_request(self, message: InboundMessage) -> PushRequest | Undecodable:
        """Always undecodable."""
        return Undecodable("UnknownSchema", "no schema here")

    def dead_letter_headers(
        self, message: InboundMessage, failure: FailureInfo
    ) -> list[tuple[str, bytes | None]]:
        """Only the failure's class."""
        return [("error_class", failure.error_class.encode())]

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the handler asked the codec for {name} on an undecodable record")
