"""The Kafka/Avro record codec's own wire details, and the handler over a fake of the port.

What every codec must do is the contract's (tests/contract/record_codec_contract.py,
run by test_record_codec_contract.py); these pin the adapter's exact headers and reasons.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.kafka.consumer import ConsumedMessage
from adapters.kafka.headers import build_failure_headers, build_headers
from adapters.kafka.record_codec import KafkaAvroRecordCodec
from consumer.handling import DeadLetter
from consumer.push_handler import PushHandler
from domain.headers import FailureInfo
from domain.idempotency import generate_idempotency_key
from domain.messaging import PushRequest, Undecodable
from domain.model import DraftOrderStatus
from tests.codec_fakes import RefusingCodec
from tests.unit.test_push_handler import Env, make_order

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CODEC = KafkaAvroRecordCodec()


def with_headers(message: ConsumedMessage, items: tuple[tuple[str, bytes | None], ...]) -> Any:
    return ConsumedMessage(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        {},
        None,
        items,
    )


def failure(due: datetime | None = None) -> FailureInfo:
    return FailureInfo.new(
        original_topic="requests",
        original_partition=0,
        original_offset=3,
        error_class="ConnectorTransientError",
        error_message="busy",
        first_failure_at=T0,
        due_at=due,
    )


def test_a_request_decodes_into_a_typed_push_request() -> None:
    env = Env()
    order = make_order(uuid.uuid4())
    message = env.request(order)
    request = CODEC.decode_request(message)
    assert isinstance(request, PushRequest)
    assert request.order == replace(order, status=DraftOrderStatus.APPROVED)
    assert (request.org_id, request.attempt, request.push_round) == (order.org_id, 0, 0)
    assert request.idempotency_key == generate_idempotency_key(order.org_id, order.id, 0)
    assert request.headers.event_type == "PushRequested"
    assert request.headers.failure is None


def test_headers_are_checked_before_the_value() -> None:
    env = Env()
    message = env.request(make_order(uuid.uuid4()))
    kept = tuple((k, v) for k, v in message.header_items if k != "org_id")
    broken = ConsumedMessage("requests", 0, 1, b"k", b"not avro", {}, None, kept)
    assert CODEC.decode_request(broken) == Undecodable(
        "MissingHeaderError", "Header 'org_id': missing"
    )


def test_an_undecodable_value_keeps_the_failure_the_record_carried() -> None:
    env = Env()
    message = env.request(make_order(uuid.uuid4()))
    retry = message.header_items + tuple(build_failure_headers(failure(T0)))
    result = CODEC.decode_request(
        ConsumedMessage("retry.1", 0, 1, b"k", b"\xc3\x01\x00", {}, None, retry)
    )
    assert isinstance(result, Undecodable)
    assert result.error_class == "UndecodableMessage"
    assert result.failure == failure(T0)


def test_due_at_is_lenient() -> None:
    env = Env()
    message = env.request(make_order(uuid.uuid4()))
    due = T0 + timedelta(seconds=2)
    assert CODEC.due_at(message) is None
    assert CODEC.due_at(with_headers(message, (("due_at", due.isoformat().encode()),))) == due
    last = (("due_at", b"garbage"), ("due_at", due.isoformat().encode()))
    assert CODEC.due_at(with_headers(message, last)) == due  # the last pair counts
    for raw in (b"\xff", b"tomorrow", b"2026-01-02T03:04:05"):  # not UTF-8, not a time, naive
        assert CODEC.due_at(with_headers(message, (("due_at", raw),))) is None


def test_outbox_headers_are_the_text_of_the_kafka_headers() -> None:
    env = Env()
    request = CODEC.decode_request(env.request(make_order(uuid.uuid4())))
    assert isinstance(request, PushRequest)
    headers = request.headers.with_failure(failure(T0))
    text = CODEC.outbox_headers(headers)
    assert [(k, v.encode()) for k, v in text.items()] == build_headers(headers)


def test_dead_letter_headers_keep_what_arrived_and_replace_the_failure() -> None:
    items = (("event_id", b"\xff"), ("error_class", b"Old"), ("x-other", None))
    message = ConsumedMessage("requests", 0, 1, b"k", b"v", {}, None, items)
    pairs = list(CODEC.dead_letter_headers(message, failure()))
    assert pairs[:2] == [("event_id", b"\xff"), ("x-other", None)]
    assert dict(pairs)["error_class"] == b"ConnectorTransientError"


def test_the_handler_dead_letters_what_its_codec_cannot_decode() -> None:
    env = Env()
    handler = PushHandler(env.attempts, codec=RefusingCodec(), clock=env.clock)  # type: ignore[arg-type]
    message = ConsumedMessage("requests", 2, 9, b"key", b"value", {}, None, ())
    result = handler.handle(message)
    assert result == DeadLetter(
        b"key", b"value", [("error_class", b"UnknownSchema")], "no schema here"
    )
    assert env.db.push_log == {} and env.db.outbox == [] and env.db.commits == 0
