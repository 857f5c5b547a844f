"""The push worker end to end on real PostgreSQL and Kafka, with the real outbox relay.

One temporary database for the module; each test gets its own topic prefix and
consumer group, runs the relay and the worker in threads and stops both
(SIGTERM path: ``stop()``) at the end. Every wait is a bounded deadline loop.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.avro.codec import encode_push_requested
from adapters.avro.records import push_requested_record
from adapters.connectors.mock import MockConnector
from adapters.connectors.registry import ConnectorRegistry
from adapters.kafka.config import producer_config
from adapters.kafka.headers import EventHeaders
from adapters.kafka.producer import EventProducer
from adapters.kafka.topics import TopicNames
from adapters.postgres.engine import make_session_factory
from consumer.handling import RetrySettings
from consumer.worker import PushWorker, WorkerSettings
from domain.idempotency import export_key, generate_idempotency_key
from domain.model import DraftOrder
from domain.ports import ERPConnectorPort
from entrypoints.relay_wiring import RelayConfig, build_relay
from entrypoints.worker_process import WorkerConfig, build_worker
from producer.approval import new_traceparent
from producer.relay import OutboxRelay
from producer.relay_settings import RelaySettings
from tests.integration._pipeline import (
    InProcessPipeline,
    delete_topics,
    make_order,
    relay_and_worker,
)

pytestmark = pytest.mark.integration

PARTITIONS = 3
DEADLINE = 30.0


@pytest.fixture
def factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE erp_connection, erp_push_log, outbox_event, outbox_published, draft_order"
            )
        )
    yield make_session_factory(engine)


@pytest.fixture(autouse=True)
def master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", os.urandom(32).hex())


class SharedMock:
    """Registry handing out one MockConnector, so the test can count its calls."""

    def __init__(self) -> None:
        self.mock = MockConnector()

    def get(self, connector_type: str, /) -> ERPConnectorPort:
        if connector_type == "MOCK":
            return self.mock
        return ConnectorRegistry.get(connector_type)

    def calls(self, order: DraftOrder) -> int:
        return self.mock.calls.get(export_key(order.org_id, order.id), 0)


@dataclass
class Pipeline(InProcessPipeline):
    registry: SharedMock
    worker: PushWorker
    relay: OutboxRelay


@pytest.fixture
def pipeline(
    migrated_db_url: str, kafka_bootstrap_servers: str, factory: sessionmaker[Session]
) -> Iterator[Pipeline]:
    prefix = f"it-worker-{uuid.uuid4().hex[:10]}"
    topics = TopicNames(prefix, retry_tiers=3)
    registry = SharedMock()
    config = WorkerConfig(
        bootstrap_servers=kafka_bootstrap_servers,
        database_url=migrated_db_url,
        topic_prefix=prefix,
        group_id=f"{prefix}-group",
        partitions=PARTITIONS,
        worker=WorkerSettings(
            concurrency=4,
            retry=RetrySettings(max_retries=2, retry_delay_base=0.2, retry_tiers=3),
            drain_timeout_s=10,
        ),
    )
    worker = build_worker(config, registry=registry)
    relay = build_relay(
        RelayConfig(
            database_url=migrated_db_url,
            bootstrap_servers=kafka_bootstrap_servers,
            topic_prefix=prefix,
            partitions=PARTITIONS,
        ),
        RelaySettings(idle_poll_s=0.1),
    )
    with relay_and_worker(relay, worker, config, DEADLINE):
        yield Pipeline(
            topics=topics,
            bootstrap=kafka_bootstrap_servers,
            factory=factory,
            registry=registry,
            worker=worker,
            relay=relay,
        )
    delete_topics(kafka_bootstrap_servers, topics.all())


def publish_request(pipeline: Pipeline, order: DraftOrder, copies: int = 1) -> None:
    """Publish a request straight to the requests topic, as an upstream service may."""
    now = datetime.now().astimezone()
    event_id = uuid.uuid4()
    key = generate_idempotency_key(order.org_id, order.id, 0)
    value = encode_push_requested(
        push_requested_record(
            order,
            event_id=event_id,
            idempotency_key=key,
            attempt=0,
            occurred_at=now,
            approved_at=now,
        )
    )
    headers = EventHeaders(
        event_id=event_id,
        event_type="PushRequested",
        idempotency_key=key,
        org_id=order.org_id,
        attempt=0,
        occurred_at=now,
        traceparent=new_traceparent(),
    )
    producer = EventProducer(producer_config(pipeline.bootstrap))
    for _ in range(copies):
        producer.produce(pipeline.topics.requests, str(order.id), value, headers)
    assert producer.flush(DEADLINE) == 0


def push_log(engine: Engine, order: DraftOrder) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT attempt, status, created_at, updated_at FROM erp_push_log"
                    " WHERE draft_order_id = :id ORDER BY attempt"
                ),
                {"id": order.id},
            )
        )


def test_happy_path_publishes_one_success_result(pipeline: Pipeline) -> None:
    org = uuid.uuid4()
    pipeline.add_connection(org, {"mode": "success"})
    order = make_order(org)
    pipeline.approve(order)
    results = pipeline.results(1)
    assert [(r["draft_order_id"], r["status"]) for r in results] == [(order.id, "SUCCESS")]
    assert results[0]["connector_type"] == "MOCK"
    assert pipeline.registry.calls(order) == 1


def test_poison_message_goes_to_dlq_and_the_next_one_is_processed(pipeline: Pipeline) -> None:
    org = uuid.uuid4()
    pipeline.add_connection(org, {"mode": "success"})
    producer = EventProducer(producer_config(pipeline.bootstrap))
    order = make_order(org)
    # Same key as the good order: the poison must not block its partition.
    producer.produce(pipeline.topics.requests, str(order.id), b"\x00not avro at all", None)
    assert producer.flush(DEADLINE) == 0
    pipeline.approve(order)
    dead = pipeline.read(pipeline.topics.dlq, 1)
    assert [d.value for d in dead] == [b"\x00not avro at all"]
    assert dead[0].key == str(order.id).encode()
    assert dead[0].headers["original_topic"] == pipeline.topics.requests
    assert dead[0].headers["error_class"] in {"MissingHeaderError", "UndecodableMessage"}
    assert dead[0].headers["error_message"]
    assert [r["status"] for r in pipeline.results(1)] == ["SUCCESS"]


def test_undecodable_value_with_valid_headers_is_dead_lettered_with_reason(
    pipeline: Pipeline,
) -> None:
    org = uuid.uuid4()
    now = datetime.now().astimezone()
    headers = EventHeaders(
        event_id=uuid.uuid4(),
        event_type="PushRequested",
        idempotency_key=generate_idempotency_key(org, uuid.uuid4(), 0),
        org_id=org,
        attempt=0,
        occurred_at=now,
        traceparent=new_traceparent(),
    )
    producer = EventProducer(producer_config(pipeline.bootstrap))
    producer.produce(pipeline.topics.requests, b"k", b"\xc3\x01short", headers)
    assert producer.flush(DEADLINE) == 0
    dead = pipeline.read(pipeline.topics.dlq, 1)
    assert len(dead) == 1
    assert dead[0].headers["error_class"] == "UndecodableMessage"
    assert dead[0].headers["event_id"] == str(headers.event_id)


def test_same_request_delivered_twice_exports_once(pipeline: Pipeline, engine: Engine) -> None:
    org = uuid.uuid4()
    pipeline.add_connection(org, {"mode": "success"})
    order = make_order(org)
    publish_request(pipeline, order, copies=2)
    assert [r["status"] for r in pipeline.results(1)] == ["SUCCESS"]
    assert pipeline.registry.calls(order) == 1
    assert [row.status for row in push_log(engine, order)] == ["SUCCESS"]


def test_transient_failure_is_retried_on_a_tier_after_the_delay(
    pipeline: Pipeline, engine: Engine
) -> None:
    org = uuid.uuid4()
    pipeline.add_connection(org, {"mode": "transient", "fail_times": 1})
    order = make_order(org)
    pipeline.approve(order)
    results = pipeline.results(1)
    assert [(r["status"], r["attempt"]) for r in results] == [("SUCCESS", 1)]
    assert pipeline.registry.calls(order) == 2
    rows = push_log(engine, order)
    assert [(r.attempt, r.status) for r in rows] == [(0, "RETRYING"), (1, "SUCCESS")]
    # Never early: attempt 1 was claimed at least base * 2^0 after attempt 0 failed.
    waited = rows[1].created_at - rows[0].updated_at
    assert waited >= timedelta(seconds=0.2), waited
    tier = pipeline.read(pipeline.topics.retry(1), 1)
    assert len(tier) == 1
    assert tier[0].headers["attempt"] == "1"
    assert tier[0].headers["error_class"] == "ConnectorTransientError"
    assert tier[0].headers["original_topic"] == pipeline.topics.requests
    due = datetime.fromisoformat(tier[0].headers["due_at"])
    first = datetime.fromisoformat(tier[0].headers["first_failure_at"])
    assert due - first >= timedelta(seconds=0.2)


def test_permanent_failure_ends_failed_with_a_dead_letter(
    pipeline: Pipeline, engine: Engine
) -> None:
    org = uuid.uuid4()
    pipeline.add_connection(org, {"mode": "fail"})
    order = make_order(org)
    pipeline.approve(order)
    results = pipeline.results(1)
    assert [(r["status"], r["error_class"]) for r in results] == [
        ("FAILED", "ConnectorRejectedError")
    ]
    dead = pipeline.read(pipeline.topics.dlq, 1)
    assert len(dead) == 1
    assert dead[0].headers["error_class"] == "ConnectorRejectedError"
    assert dead[0].key == str(order.id).encode()
    assert [r.status for r in push_log(engine, order)] == ["FAILED"]
    assert pipeline.registry.calls(order) == 1
