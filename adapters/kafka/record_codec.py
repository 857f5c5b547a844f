"""The push worker's wire format: Kafka headers plus Avro values (``domain.messaging.RecordCodec``).

:class:`KafkaAvroRecordCodec` decodes a consumed record into a
:class:`~domain.messaging.PushRequest` - headers first
(:func:`~adapters.kafka.headers.parse_headers`), then the single-object Avro
value (:mod:`adapters.avro`) - or says why it cannot
(:class:`~domain.messaging.Undecodable`, whose ``error_class`` is the failing
check's exception class: ``MissingHeaderError``, ``InvalidHeaderError``,
``UndecodableMessage``, ``InvalidMessage``, ``UnknownSchema``; docs/events.md
lists them in this order). It also builds what answers a request: outbox text
headers and the payloads (the Avro records in JSON form, which the relay's
value encoder turns into bytes).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapters.avro.codec import PUSH_REQUESTED, AvroCodec, AvroCodecError, default_codec
from adapters.avro.records import (
    draft_order_from_push_requested,
    jsonable,
    push_result_record,
    push_round_of_request,
)
from adapters.kafka.headers import (
    build_headers,
    due_at_of,
    parse_headers,
    replace_failure_headers,
)
from domain.headers import EventHeaders, FailureInfo, HeaderError
from domain.messaging import HeaderPairs, InboundMessage, PushRequest, Undecodable
from domain.model import PushStatus


class KafkaAvroRecordCodec:
    """Kafka headers and Avro values of the pipeline (see the module docstring).

    ``avro`` defaults to the shared codec of ``schemas/`` (current schemas plus
    their published history, so older writers still decode).
    """

    def __init__(self, avro: AvroCodec | None = None) -> None:
        self._avro = avro if avro is not None else default_codec()

    def decode_request(self, message: InboundMessage) -> PushRequest | Undecodable:
        """The push request of ``message``, or why it cannot be one (headers checked first)."""
        try:
            headers = parse_headers(message.header_items)
        except HeaderError as exc:
            return Undecodable(type(exc).__name__, str(exc))
        try:
            record = self._avro.decode(message.value, PUSH_REQUESTED).record
            order = draft_order_from_push_requested(record)
            push_round = push_round_of_request(record)
        except AvroCodecError as exc:
            return Undecodable(type(exc).__name__, exc.reason, headers.failure)
        return PushRequest(
            headers=headers,
            order=order,
            attempt=record["attempt"],
            push_round=push_round,
            idempotency_key=record["idempotency_key"],
            record=record,
        )

    def due_at(self, message: InboundMessage) -> datetime | None:
        """The record's ``due_at`` header (None if absent, garbled or without a time zone)."""
        return due_at_of(message.header_items)

    def outbox_headers(self, headers: EventHeaders) -> dict[str, str]:
        """``headers`` as the outbox stores them (validated; the text of each Kafka header)."""
        return {key: value.decode("utf-8") for key, value in build_headers(headers)}

    def dead_letter_headers(self, message: InboundMessage, failure: FailureInfo) -> HeaderPairs:
        """``message``'s header pairs kept byte for byte, its failure headers replaced."""
        return replace_failure_headers(message.header_items, failure)

    def request_payload(self, request: PushRequest) -> dict[str, Any]:
        """The request's record, unchanged, in the JSON form of an outbox payload."""
        return _payload(request.record)

    def retry_payload(
        self,
        request: PushRequest,
        *,
        event_id: uuid.UUID,
        idempotency_key: str,
        attempt: int,
        occurred_at: datetime,
    ) -> dict[str, Any]:
        """The next attempt's ``PushRequested`` record (every other field kept)."""
        return _payload(
            {
                **request.record,
                "event_id": event_id,
                "idempotency_key": idempotency_key,
                "attempt": attempt,
                "occurred_at": occurred_at,
            }
        )

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
        """The ``PushResult`` record answering ``request`` (see ``push_result_record``)."""
        return _payload(
            push_result_record(
                request.record,
                event_id=event_id,
                status=status,
                completed_at=completed_at,
                connector_type=connector_type,
                storage_key=storage_key,
                erp_reference=erp_reference,
                error_class=error_class,
                error_message=error_message,
                latency_ms=latency_ms,
            )
        )


def _payload(record: Mapping[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = jsonable(dict(record))  # a mapping stays a mapping
    return payload
