"""Order per draft order while it is in retry, and claims left by crashed workers.

Real PostgreSQL and Kafka, the real outbox relay and push worker in threads
(as in ``test_consumer_worker.py``). One shared recording MockConnector sees
every export call, with its time, so the tests compare the order of exports.
Every wait is a bounded deadline loop.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.avro.codec import decode_push_requested, encode_push_requested
from adapters.avro.records import push_requested_record
from adapters.connectors.mock import MockConnector
from adapters.kafka.config import producer_config
from adapters.kafka.headers import EventHeaders
from adapters.kafka.producer import EventProducer
from adapters.kafka.topics import TopicNames
from adapters.postgres.engine import make_session_factory
from consumer.handling import RetrySettings
from consumer.push_handler import DEFERRED
from consumer.worker import PushWorker, WorkerSettings
from domain.idempotency import generate_idempotency_key
from domain.model import DraftOrder
from domain.ports import ERPConnectorPort, ExportResult
from domain.records import PushLogEntry, order_to_json
from entrypoints.bootstrap import sql_unit_of_work
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
    wait_until,
)

pytestmark = pytest.mark.integration

PARTITIONS = 3
DEADLINE = 30.0
BASE = 2.0  # retry delay base: the first retry is due 2 s after the failure


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


@dataclass(frozen=True)
class Export:
    at: float  # time.monotonic() when the call ended
    order_id: uuid.UUID
    ok: bool


class RecordingMock(MockConnector):
    """A MockConnector that records every export call in order, with its outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.exports: list[Export] = []
        self._record_lock = threading.Lock()

    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        try:
            result = super().export(draft_order, config)
        except Exception:
            self._record(draft_order.id, ok=False)
            raise
        self._record(draft_order.id, ok=True)
        return result

    def _record(self, order_id: uuid.UUID, *, ok: bool) -> None:
        with self._record_lock:
            self.exports.append(Export(time.monotonic(), order_id, ok))

    def of(self, order: DraftOrder) -> list[Export]:
        with self._record_lock:
            return [e for e in self.exports if e.order_id == order.id]


class SharedRegistry:
    def __init__(self) -> None:
        self.mock = RecordingMock()

    def get(self, connector_type: str, /) -> ERPConnectorPort:
        if connector_type != "MOCK":
            raise ValueError(f"Unknown connector type: {connector_type!r}")
        return self.mock


@dataclass
class Pipeline(InProcessPipeline):
    registry: SharedRegistry
    worker: PushWorker
    relay: OutboxRelay

    @property
    def mock(self) -> RecordingMock:
        return self.registry.mock

    def publish_request(self, order: DraftOrder, event_id: uuid.UUID) -> None:
        """Publish a new attempt-0 event for ``order`` straight to the requests topic."""
        now = datetime.now(UTC)
        key = generate_idempotency_key(order.org_id, order.id, 0)
        record = push_requested_record(
            order,
            event_id=event_id,
            idempotency_key=key,
            attempt=0,
            occurred_at=now,
            approved_at=now,
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
        producer = EventProducer(producer_config(self.bootstrap))
        producer.produce(
            self.topics.requests, str(order.id), encode_push_requested(record), headers
        )
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


@pytest.fixture
def pipeline(
    migrated_db_url: str, kafka_bootstrap_servers: str, factory: sessionmaker[Session]
) -> Iterator[Pipeline]:
    prefix = f"it-ordering-{uuid.uuid4().hex[:10]}"
    topics = TopicNames(prefix, retry_tiers=3)
    registry = SharedRegistry()
    config = WorkerConfig(
        bootstrap_servers=kafka_bootstrap_servers,
        database_url=migrated_db_url,
        topic_prefix=prefix,
        group_id=f"{prefix}-group",
        partitions=PARTITIONS,
        worker=WorkerSettings(
            concurrency=4,
            retry=RetrySettings(max_retries=2, retry_delay_base=BASE, retry_tiers=3),
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


def test_later_event_of_an_order_in_retry_waits_while_other_orders_flow(
    pipeline: Pipeline, engine: Engine
) -> None:
    retried_org, other_org = uuid.uuid4(), uuid.uuid4()
    pipeline.add_connection(retried_org, {"mode": "transient", "fail_times": 1})
    pipeline.add_connection(other_org, {"mode": "success"})
    order = make_order(retried_org)
    others = [make_order(other_org) for _ in range(4)]

    pipeline.approve(order)
    wait_until(
        lambda: [r.status for r in push_log(engine, order)] == ["RETRYING"],
        DEADLINE,
        "the first attempt to fail transiently",
    )
    failed_at = pipeline.mock.of(order)[0].at
    second_event = uuid.uuid4()
    pipeline.publish_request(order, second_event)  # a later event of the same order
    for other in others:
        pipeline.approve(other)

    results = pipeline.results(1 + len(others))
    by_order = {r["draft_order_id"]: (r["status"], r["attempt"]) for r in results}
    assert by_order == {order.id: ("SUCCESS", 1), **{o.id: ("SUCCESS", 0) for o in others}}
    assert len(results) == 1 + len(others)  # no result for the deferred duplicate
    wait_until(
        lambda: pipeline.worker.stats.get("duplicate", 0) >= 1,
        DEADLINE,
        "the deferred event to be handled after the retry chain",
    )

    # The retried order: failed once, exported by its retry - never by the later event.
    calls = pipeline.mock.of(order)
    assert [c.ok for c in calls] == [False, True]
    retried_at = calls[1].at
    assert retried_at - failed_at >= BASE * 0.9  # the tier held it until due (clock skew)
    # Other orders did not wait for the retry chain: exported before the retry ran (which
    # was held until due). Not "before failed_at + BASE": that bounds the machine's speed.
    for other in others:
        [call] = pipeline.mock.of(other)
        assert call.ok
        assert call.at < retried_at
    assert [(r.attempt, r.status) for r in push_log(engine, order)] == [
        (0, "RETRYING"),
        (1, "SUCCESS"),
    ]

    # The later event was deferred onto the retry's tier, queued behind the retry record.
    tier = pipeline.read(pipeline.topics.retry(1), 2)
    assert len(tier) == 2
    retry, deferred = sorted(tier, key=lambda r: r.offset)
    assert retry.partition == deferred.partition
    assert retry.headers["attempt"] == "1"
    assert deferred.headers["event_id"] == str(second_event)
    assert deferred.headers["attempt"] == "0"
    assert deferred.headers["error_class"] == DEFERRED
    assert datetime.fromisoformat(deferred.headers["due_at"]) > datetime.fromisoformat(
        retry.headers["due_at"]
    )
    assert decode_push_requested(deferred.value)["event_id"] == second_event
    assert pipeline.worker.stats.get("deferred") == 1


def _claim(factory: sessionmaker[Session], order: DraftOrder, lease_expires_at: datetime) -> None:
    """A PENDING claim of attempt 0 as a worker leaves it when it dies mid-call."""
    uow = sql_unit_of_work(session_factory=factory)
    now = datetime.now(UTC)
    with uow:
        entry = PushLogEntry.pending(
            org_id=order.org_id,
            draft_order_id=order.id,
            idempotency_key=generate_idempotency_key(order.org_id, order.id, 0),
            attempt=0,
            now=now,
            lease_expires_at=lease_expires_at,
            connector_type="MOCK",
            request_json=order_to_json(order),
        )
        assert uow.push_log.claim(entry) is not None
        uow.commit()


def test_stale_claim_is_taken_over_on_redelivery(
    pipeline: Pipeline, engine: Engine, factory: sessionmaker[Session]
) -> None:
    org = uuid.uuid4()
    pipeline.add_connection(org, {"mode": "success"})
    order = make_order(org)
    _claim(factory, order, datetime.now(UTC) - timedelta(seconds=1))  # its lease expired
    pipeline.publish_request(order, uuid.uuid4())
    assert [(r["status"], r["attempt"]) for r in pipeline.results(1)] == [("SUCCESS", 0)]
    assert [r.status for r in push_log(engine, order)] == ["SUCCESS"]
    assert [c.ok for c in pipeline.mock.of(order)] == [True]


def test_live_claim_is_rechecked_until_its_lease_expires_then_taken_over(
    pipeline: Pipeline, engine: Engine, factory: sessionmaker[Session]
) -> None:
    org = uuid.uuid4()
    pipeline.add_connection(org, {"mode": "success"})
    order = make_order(org)
    lease_end = datetime.now(UTC) + timedelta(seconds=2.5)
    _claim(factory, order, lease_end)  # held by a worker that then died
    pipeline.publish_request(order, uuid.uuid4())
    assert [(r["status"], r["attempt"]) for r in pipeline.results(1)] == [("SUCCESS", 0)]
    assert [r.status for r in push_log(engine, order)] == ["SUCCESS"]
    [call] = pipeline.mock.of(order)
    assert call.ok
    assert pipeline.worker.stats.get("deferred", 0) >= 1  # not dropped as a duplicate
    rows = push_log(engine, order)
    assert rows[0].updated_at >= lease_end  # exported only once the lease had expired
