"""The record codec contract against the Kafka/Avro adapter and the JSON fake of the port."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from adapters.avro.codec import decode_push_result, encode_push_requested
from adapters.avro.outbox_values import outbox_value_encoder
from adapters.avro.records import push_requested_record
from adapters.kafka.headers import build_headers
from adapters.kafka.record_codec import KafkaAvroRecordCodec
from domain.events import AGGREGATE_DRAFT_ORDER
from domain.headers import EventHeaders, FailureInfo
from domain.messaging import HeaderPairs, InboundMessage, PushRequest, RecordCodec, Undecodable
from domain.model import DraftOrder
from domain.records import OutboxEvent
from tests.codec_fakes import JsonRecordCodec, encode_request
from tests.contract.record_codec_contract import (
    RESULT_FIELDS,
    T0,
    Inbound,
    RecordCodecContract,
)


def text_items(headers: Mapping[str, str]) -> tuple[tuple[str, bytes | None], ...]:
    """Text headers as the relay publishes them (UTF-8)."""
    return tuple((k, v.encode("utf-8")) for k, v in headers.items())


class TestKafkaAvroRecordCodec(RecordCodecContract):
    def make_codec(self) -> RecordCodec:
        return KafkaAvroRecordCodec()

    def request_message(
        self, order: DraftOrder, headers: EventHeaders, *, topic: str = "requests"
    ) -> InboundMessage:
        value = encode_push_requested(
            push_requested_record(
                order,
                event_id=headers.event_id,
                idempotency_key=headers.idempotency_key,
                attempt=headers.attempt,
                occurred_at=headers.occurred_at,
                approved_at=T0,
            )
        )
        return Inbound(topic, 0, 7, str(order.id).encode(), value, tuple(build_headers(headers)))

    def published(
        self, event_type: str, payload: Mapping[str, Any], headers: Mapping[str, str], topic: str
    ) -> InboundMessage:
        order_id = uuid.UUID(str(payload["draft_order_id"]))
        event = OutboxEvent(
            event_id=uuid.UUID(headers["event_id"]),
            aggregate_type=AGGREGATE_DRAFT_ORDER,
            aggregate_id=order_id,
            org_id=uuid.UUID(headers["org_id"]),
            event_type=event_type,
            payload=dict(payload),
            headers=dict(headers),
            created_at=T0,
        )
        value = outbox_value_encoder()(event)
        return Inbound(topic, 0, 8, str(order_id).encode(), value, text_items(headers))

    def read_result(self, message: InboundMessage) -> dict[str, Any]:
        record = decode_push_result(message.value)
        return {name: record[name] for name in RESULT_FIELDS}


class TestJsonRecordCodec(RecordCodecContract):
    def make_codec(self) -> RecordCodec:
        return JsonRecordCodec()

    def request_message(
        self, order: DraftOrder, headers: EventHeaders, *, topic: str = "requests"
    ) -> InboundMessage:
        value, items = encode_request(headers, order)
        return Inbound(topic, 0, 7, str(order.id).encode(), value, items)

    def published(
        self, event_type: str, payload: Mapping[str, Any], headers: Mapping[str, str], topic: str
    ) -> InboundMessage:
        value = json.dumps(payload).encode("utf-8")
        return Inbound(topic, 0, 8, None, value, text_items(headers))

    def read_result(self, message: InboundMessage) -> dict[str, Any]:
        record = json.loads(message.value or b"")
        result = {name: record[name] for name in RESULT_FIELDS}
        for name in ("event_id", "request_event_id", "org_id", "draft_order_id"):
            result[name] = uuid.UUID(result[name])
        result["completed_at"] = datetime.fromisoformat(result["completed_at"])
        return result


# --- the contract catches broken codecs ------------------------------------------------------
class EchoingCodec(JsonRecordCodec):
    """Quotes the raw headers in its reasons."""

    def decode_request(self, message: InboundMessage) -> PushRequest | Undecodable:
        result = super().decode_request(message)
        if isinstance(result, Undecodable):
            return replace(result, reason=f"{result.reason} in {message.header_items!r}")
        return result


class NullDroppingCodec(JsonRecordCodec):
    """Loses header pairs without a value from dead letters."""

    def dead_letter_headers(self, message: InboundMessage, failure: FailureInfo) -> HeaderPairs:
        return [(k, v) for k, v in super().dead_letter_headers(message, failure) if v is not None]


class RaisingCodec(JsonRecordCodec):
    """Lets a value's decoding error escape."""

    def decode_request(self, message: InboundMessage) -> PushRequest | Undecodable:
        result = super().decode_request(message)
        if isinstance(result, Undecodable) and result.error_class == "UndecodableMessage":
            raise ValueError(result.reason)
        return result


class StaleResultCodec(JsonRecordCodec):
    """Reports the request's first attempt in its results."""

    def result_payload(self, request: PushRequest, **fields: Any) -> dict[str, Any]:
        return {**super().result_payload(request, **fields), "attempt": 0}


class RetryKeepingCodec(JsonRecordCodec):
    """Keeps the request's idempotency key on the next attempt."""

    def retry_payload(self, request: PushRequest, **fields: Any) -> dict[str, Any]:
        payload = super().retry_payload(request, **fields)
        return {**payload, "idempotency_key": request.idempotency_key}


BROKEN: list[tuple[type[JsonRecordCodec], str, type[Exception]]] = [
    (EchoingCodec, "test_a_garbled_header_is_named_without_echoing_it", AssertionError),
    (
        NullDroppingCodec,
        "test_dead_letter_headers_keep_the_record_s_pairs_and_carry_the_new_failure",
        AssertionError,
    ),
    (
        RaisingCodec,
        "test_a_value_that_is_no_request_is_refused_keeping_the_failure_it_carried",
        ValueError,
    ),
    (
        StaleResultCodec,
        "test_a_result_payload_carries_the_outcome_its_readers_need",
        AssertionError,
    ),
    (
        RetryKeepingCodec,
        "test_a_retry_payload_reads_back_as_the_next_attempt_of_the_same_order",
        AssertionError,
    ),
]


@pytest.mark.parametrize(("codec", "test", "error"), BROKEN, ids=[c.__name__ for c, _, _ in BROKEN])
def test_the_contract_fails_a_broken_codec(
    codec: type[JsonRecordCodec], test: str, error: type[Exception]
) -> None:
    suite = TestJsonRecordCodec()
    suite.make_codec = codec  # type: ignore[method-assign]
    with pytest.raises(error):
        getattr(suite, test)()
