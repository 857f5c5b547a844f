"""The worker's outbox value encoder (no fastavro validate) writes the relay's bytes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from adapters.avro.codec import AvroCodecError
from adapters.avro.records import jsonable, push_result_record
from domain.records import AGGREGATE_DRAFT_ORDER, OutboxEvent
from entrypoints.bootstrap import outbox_value_encoder
from entrypoints.worker_process import outcome_value_encoder

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def result_event(**changes: object) -> OutboxEvent:
    request = {
        "event_id": uuid.uuid4(),
        "org_id": uuid.uuid4(),
        "draft_order_id": uuid.uuid4(),
        "idempotency_key": "k" * 64,
        "attempt": 1,
        "approved_at": NOW,
    }
    record = push_result_record(
        request,
        event_id=uuid.uuid4(),
        status="FAILED",
        completed_at=NOW,
        connector_type="MOCK",
        error_class="ConnectorRejectedError",
        error_message="x" * 5000,  # longer than the schema's bound: cut, either way
        latency_ms=12,
    )
    payload = {**jsonable(record), **changes}
    return OutboxEvent(
        event_id=record["event_id"],
        aggregate_type=AGGREGATE_DRAFT_ORDER,
        aggregate_id=request["draft_order_id"],
        org_id=request["org_id"],
        event_type="PushResult",
        payload=payload,
        headers={},
        created_at=NOW,
    )


def test_the_same_bytes_as_the_validating_encoder_of_the_relay() -> None:
    event = result_event()
    assert outcome_value_encoder()(event) == outbox_value_encoder()(event)


def test_a_record_that_does_not_fit_is_still_refused() -> None:
    with pytest.raises((AvroCodecError, ValueError)):
        outcome_value_encoder()(result_event(status="MAYBE"))
    with pytest.raises((AvroCodecError, ValueError)):
        outcome_value_encoder()(result_event(latency_ms="slow"))
