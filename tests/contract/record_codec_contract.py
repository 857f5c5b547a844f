"""The contract of ``domain.messaging.RecordCodec``, for every implementation.

A subclass gives the codec and its producer side: :meth:`RecordCodecContract.make_codec`,
:meth:`~RecordCodecContract.request_message` (a ``PushRequested`` record as
the relay publishes it for an approved order), :meth:`~RecordCodecContract.published`
(what the relay publishes for an outbox event of a payload and text headers
the codec built) and :meth:`~RecordCodecContract.read_result` (a published
``PushResult`` as its readers see it). The Kafka/Avro adapter and the JSON fake
of ``tests/codec_fakes.py`` both run it (tests/unit).

Header names are the domain's (``domain.headers``); how a value is written is
the codec's, so the contract garbles headers only with bytes no codec could
read (``b"\\xff"``, or text that is no UUID, number or time).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.events import EVENT_PUSH_REQUESTED, EVENT_PUSH_RESULT, retry_event_type
from domain.headers import (
    ATTEMPT,
    DUE_AT,
    EVENT_ID,
    FAILURE_HEADERS,
    OCCURRED_AT,
    ORG_ID,
    REQUIRED_HEADERS,
    TRACEPARENT,
    EventHeaders,
    FailureInfo,
)
from domain.idempotency import generate_idempotency_key
from domain.messaging import HeaderItems, InboundMessage, PushRequest, RecordCodec, Undecodable
from domain.model import DraftOrder, DraftOrderStatus, OrderLine, PushStatus

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#: Planted where a careless codec would echo it (a garbled header, a value, an odd header).
MARKER = "s3cr3t-MARKER-4711"
#: What a value that is not a request is refused as (docs/events.md, "Dead letters").
VALUE_ERRORS = frozenset({"UndecodableMessage", "UnknownSchema", "InvalidMessage"})
#: A ``PushResult`` as its readers need it (:meth:`RecordCodecContract.read_result`).
RESULT_FIELDS = (
    "event_id",
    "request_event_id",
    "org_id",
    "draft_order_id",
    "idempotency_key",
    "status",
    "attempt",
    "connector_type",
    "storage_key",
    "erp_reference",
    "error_class",
    "error_message",
    "latency_ms",
    "completed_at",
)


@dataclass(frozen=True)
class Inbound:
    """A consumed record (``domain.messaging.InboundMessage``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    header_items: HeaderItems


def an_order(org: uuid.UUID | None = None) -> DraftOrder:
    """An approved order of two lines."""
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org or uuid.uuid4(),
        order_number="SO-\u00e9-1",
        customer_code="C-1",
        lines=(
            OrderLine(1, "SKU-1", Decimal("2"), Decimal("9.99")),
            OrderLine(2, "SKU-2", Decimal("0.5"), Decimal("100"), description="half"),
        ),
        status=DraftOrderStatus.APPROVED,
        notes="n",
    )


def request_headers(
    order: DraftOrder, attempt: int = 0, push_round: int = 0, failure: FailureInfo | None = None
) -> EventHeaders:
    """The headers of ``order``'s request ``attempt`` of round ``push_round``."""
    return EventHeaders(
        event_id=uuid.uuid4(),
        event_type=EVENT_PUSH_REQUESTED,
        idempotency_key=generate_idempotency_key(
            order.org_id, order.id, attempt, push_round=push_round
        ),
        org_id=order.org_id,
        attempt=attempt,
        occurred_at=T0,
        traceparent=TRACE,
        failure=failure,
    )


def a_failure(
    due: datetime | None = None, error_class: str = "ConnectorTransientError"
) -> FailureInfo:
    """A failure first seen at offset 3 of ``requests``."""
    return FailureInfo.new(
        original_topic="requests",
        original_partition=0,
        original_offset=3,
        error_class=error_class,
        error_message="ERP busy",
        first_failure_at=T0,
        due_at=due,
    )


def with_items(message: InboundMessage, items: HeaderItems, value: Any = ...) -> Inbound:
    """``message`` with other header pairs (and value, if given)."""
    return Inbound(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value if value is ... else value,
        items,
    )


def replaced(message: InboundMessage, key: str, raw: bytes | None) -> Inbound:
    """``message`` with every ``key`` pair's value replaced by ``raw``."""
    items = tuple((k, raw if k == key else v) for k, v in message.header_items)
    assert key in dict(items), f"{key} not in the message"
    return with_items(message, items)


class RecordCodecContract:
    """Tests every ``RecordCodec`` must pass (subclass and give the four methods)."""

    def make_codec(self) -> RecordCodec:
        """The codec under test."""
        raise NotImplementedError

    def request_message(
        self, order: DraftOrder, headers: EventHeaders, *, topic: str = "requests"
    ) -> InboundMessage:
        """The record the producer side publishes to ask for ``order``'s push (as ``headers``)."""
        raise NotImplementedError

    def published(
        self, event_type: str, payload: Mapping[str, Any], headers: Mapping[str, str], topic: str
    ) -> InboundMessage:
        """The record the relay publishes for an outbox event of this payload and headers."""
        raise NotImplementedError

    def read_result(self, message: InboundMessage) -> dict[str, Any]:
        """A published ``PushResult``: :data:`RESULT_FIELDS` as UUIDs, text, ints, times."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------
    def decoded(self, message: InboundMessage) -> PushRequest:
        request = self.make_codec().decode_request(message)
        assert isinstance(request, PushRequest), request
        return request

    def refused(self, message: InboundMessage) -> Undecodable:
        result = self.make_codec().decode_request(message)
        assert isinstance(result, Undecodable), result
        assert result.error_class.isidentifier() and result.reason, result
        assert MARKER not in result.reason and MARKER not in result.error_class
        return result

    # -- decoding ---------------------------------------------------------------------
    def test_a_request_decodes_into_the_order_attempt_and_headers_it_was_built_from(
        self,
    ) -> None:
        for attempt, push_round in ((0, 0), (2, 0), (1, 3)):
            order = an_order()
            headers = request_headers(order, attempt, push_round)
            request = self.decoded(self.request_message(order, headers))
            assert request.order == order
            assert request.headers == headers
            assert (request.attempt, request.push_round) == (attempt, push_round)
            assert request.idempotency_key == headers.idempotency_key
            assert request.org_id == order.org_id

    def test_a_missing_header_is_named_and_checked_before_the_value(self) -> None:
        order = an_order()
        message = self.request_message(order, request_headers(order))
        for name in REQUIRED_HEADERS:
            kept = tuple((k, v) for k, v in message.header_items if k != name)
            for value in (message.value, b"not a value " + MARKER.encode()):
                result = self.refused(with_items(message, kept, value))
                assert result.error_class == "MissingHeaderError", name
                assert name in result.reason
            assert self.refused(replaced(message, name, None)).error_class == "MissingHeaderError"

    def test_a_garbled_header_is_named_without_echoing_it(self) -> None:
        order = an_order()
        message = self.request_message(order, request_headers(order))
        for name in (EVENT_ID, ORG_ID, ATTEMPT, OCCURRED_AT, TRACEPARENT):
            for raw in (b"\xff\xfe" + MARKER.encode(), MARKER.encode()):
                result = self.refused(replaced(message, name, raw))
                assert result.error_class == "InvalidHeaderError", (name, raw)
                assert name in result.reason

    def test_a_value_that_is_no_request_is_refused_keeping_the_failure_it_carried(
        self,
    ) -> None:
        order = an_order()
        failure = a_failure(T0 + timedelta(seconds=30))
        for carried in (None, failure):
            message = self.request_message(order, request_headers(order, 1, failure=carried))
            cut = (self.request_message(order, request_headers(order)).value or b"")[:-3]
            for value in (None, b"", b"\xc3\x01", MARKER.encode(), b'{"a": 1}', cut):
                result = self.refused(with_items(message, message.header_items, value))
                assert result.error_class in VALUE_ERRORS, (value, result)
                assert result.failure == carried

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        data=st.data(),
        value=st.none() | st.binary(max_size=64),
    )
    def test_decoding_never_raises_whatever_arrives(
        self, data: st.DataObject, value: bytes | None
    ) -> None:
        codec = self.make_codec()
        order = an_order()
        message = self.request_message(order, request_headers(order, failure=a_failure(T0)))
        names = st.sampled_from([*REQUIRED_HEADERS, *FAILURE_HEADERS, "x-other"])
        raw = (
            st.none()
            | st.binary(max_size=24)
            | st.sampled_from([v for _, v in message.header_items])
        )
        items = tuple(data.draw(st.lists(st.tuples(names, raw), max_size=16)))
        for candidate in (
            with_items(message, items, value),
            with_items(message, message.header_items + items),
            with_items(message, items),
        ):
            result = codec.decode_request(candidate)
            assert isinstance(result, PushRequest | Undecodable)
            if isinstance(result, Undecodable):
                assert result.error_class.isidentifier() and result.reason
            due = codec.due_at(candidate)
            assert due is None or due.tzinfo is not None
            pairs = list(codec.dead_letter_headers(candidate, a_failure()))
            assert all(isinstance(k, str) and (v is None or isinstance(v, bytes)) for k, v in pairs)

    # -- retry tiers ------------------------------------------------------------------
    def test_due_at_reads_the_time_a_retry_record_carries_and_is_lenient(self) -> None:
        codec = self.make_codec()
        order = an_order()
        assert codec.due_at(self.request_message(order, request_headers(order))) is None
        due = T0 + timedelta(seconds=90, microseconds=5)
        retry = self.request_message(order, request_headers(order, 1, failure=a_failure(due)))
        assert codec.due_at(retry) == due
        for raw in (b"\xff", b"tomorrow", MARKER.encode(), None):
            assert codec.due_at(replaced(retry, DUE_AT, raw)) is None

    def test_a_retry_payload_reads_back_as_the_next_attempt_of_the_same_order(self) -> None:
        codec = self.make_codec()
        for push_round in (0, 2):
            order = an_order()
            request = self.decoded(
                self.request_message(order, request_headers(order, 0, push_round))
            )
            event_id = uuid.uuid4()
            key = generate_idempotency_key(order.org_id, order.id, 1, push_round=push_round)
            later = T0 + timedelta(seconds=7)
            payload = codec.retry_payload(
                request, event_id=event_id, idempotency_key=key, attempt=1, occurred_at=later
            )
            json.dumps(payload)  # an outbox payload is JSON
            due = later + timedelta(seconds=10)
            headers = replace(
                request.headers, event_id=event_id, idempotency_key=key, occurred_at=later
            ).with_failure(a_failure(due), attempt=1)
            message = self.published(
                retry_event_type(1), payload, codec.outbox_headers(headers), "retry.1"
            )
            again = self.decoded(message)
            assert again.order == order
            assert again.headers == headers
            assert (again.attempt, again.idempotency_key, again.push_round) == (1, key, push_round)
            assert codec.due_at(message) == due

    def test_a_deferred_request_reads_back_unchanged(self) -> None:
        codec = self.make_codec()
        order = an_order()
        request = self.decoded(self.request_message(order, request_headers(order, 2, 1)))
        headers = request.headers.with_failure(a_failure(T0 + timedelta(minutes=5)))
        text = codec.outbox_headers(headers)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in text.items())
        payload = codec.request_payload(request)
        json.dumps(payload)
        again = self.decoded(self.published(retry_event_type(2), payload, text, "retry.2"))
        assert again.headers == headers
        assert (again.order, again.attempt, again.push_round, again.idempotency_key) == (
            request.order,
            request.attempt,
            request.push_round,
            request.idempotency_key,
        )

    # -- dead letters -----------------------------------------------------------------
    def test_dead_letter_headers_keep_the_record_s_pairs_and_carry_the_new_failure(
        self,
    ) -> None:
        codec = self.make_codec()
        order = an_order()
        old = a_failure(T0 + timedelta(seconds=5))
        message = self.request_message(order, request_headers(order, 1, failure=old))
        odd = (("x-null", None), ("x-api-key", MARKER.encode()))
        message = with_items(message, message.header_items + odd)
        new = a_failure(error_class="ConnectorRejectedError")
        # Byte for byte, even a pair no codec could read (a codec may refuse such a record).
        binary = with_items(message, (*message.header_items, ("x-bin", b"\xff\x00")))
        for arrived in (message, binary):
            own = [(k, v) for k, v in arrived.header_items if k not in FAILURE_HEADERS]
            pairs = tuple(codec.dead_letter_headers(arrived, new))
            assert [(k, v) for k, v in pairs if k not in FAILURE_HEADERS] == own
        pairs = tuple(codec.dead_letter_headers(message, new))
        dead = self.decoded(with_items(message, pairs))
        assert dead.headers == replace(self.decoded(message).headers, failure=new)
        assert self.make_codec().due_at(with_items(message, pairs)) is None

    def test_dead_letter_headers_of_a_garbled_record_keep_its_pairs(self) -> None:
        items = (("event_id", b"\xff"), ("error_class", b"Old"), ("x-other", None))
        message = Inbound("requests", 0, 1, b"k", b"v", items)
        pairs = list(self.make_codec().dead_letter_headers(message, a_failure()))
        assert [p for p in pairs if p[0] not in FAILURE_HEADERS] == [items[0], items[2]]
        assert ("error_class", b"Old") not in pairs

    # -- results ----------------------------------------------------------------------
    def test_a_result_payload_carries_the_outcome_its_readers_need(self) -> None:
        codec = self.make_codec()
        order = an_order()
        request = self.decoded(self.request_message(order, request_headers(order, 2)))
        outcomes: list[dict[str, Any]] = [
            {
                "status": PushStatus.SUCCESS,
                "connector_type": "MOCK",
                "storage_key": "drop/SO-1.json",
                "erp_reference": "ERP-42",
                "error_class": None,
                "error_message": None,
                "latency_ms": 12,
            },
            {
                "status": PushStatus.FAILED,
                "connector_type": "MOCK",
                "storage_key": None,
                "erp_reference": None,
                "error_class": "ConnectorRejectedError",
                "error_message": "bad customer",
                "latency_ms": None,
            },
        ]
        for outcome in outcomes:
            event_id, done = uuid.uuid4(), T0 + timedelta(seconds=3)
            payload = codec.result_payload(request, event_id=event_id, completed_at=done, **outcome)
            json.dumps(payload)
            headers = EventHeaders(
                event_id=event_id,
                event_type=EVENT_PUSH_RESULT,
                idempotency_key=request.idempotency_key,
                org_id=order.org_id,
                attempt=request.attempt,
                occurred_at=done,
                traceparent=TRACE,
            )
            message = self.published(
                EVENT_PUSH_RESULT, payload, codec.outbox_headers(headers), "results"
            )
            assert self.read_result(message) == {
                "event_id": event_id,
                "request_event_id": request.headers.event_id,
                "org_id": order.org_id,
                "draft_order_id": order.id,
                "idempotency_key": request.idempotency_key,
                "attempt": 2,
                "completed_at": done,
                **outcome,
                "status": outcome["status"].value,
            }

    def test_nothing_a_codec_builds_repeats_an_unknown_header(self) -> None:
        codec = self.make_codec()
        order = an_order()
        message = self.request_message(order, request_headers(order))
        secret = with_items(message, (*message.header_items, ("x-api-key", MARKER.encode())))
        request = self.decoded(secret)
        built = [
            codec.request_payload(request),
            codec.retry_payload(
                request, event_id=uuid.uuid4(), idempotency_key="k", attempt=1, occurred_at=T0
            ),
            codec.result_payload(
                request,
                event_id=uuid.uuid4(),
                status=PushStatus.SUCCESS,
                completed_at=T0,
                connector_type="MOCK",
                storage_key=None,
                erp_reference=None,
                error_class=None,
                error_message=None,
                latency_ms=1,
            ),
            codec.outbox_headers(request.headers),
        ]
        assert all(MARKER not in json.dumps(b) for b in built)
