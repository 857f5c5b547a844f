"""The seed's "Retry Logic" for a connector written like its Step 1, on real services.

The connector (``tests.seed_style``) declares no schema and wraps every failure, its
ERP's timeouts too, in a plain ``ConnectorError``. Its ERP times out twice per order,
then answers: the push must end SUCCESS on the third attempt after delays of 1 s and
2 s (``base * 2^attempt``, base 1 s), never earlier -

* through ``PushOrchestrator(db_session)`` on PostgreSQL, and
* through the Kafka push worker's retry tiers (real relay, worker, Kafka, PostgreSQL;
  the worker runs in threads of this process, where the connector is registered).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.avro.codec import decode_push_result
from adapters.connectors.registry import ConnectorRegistry
from adapters.crypto.encryption import EncryptionService
from adapters.kafka.topics import TopicNames
from adapters.postgres.engine import make_session_factory
from adapters.postgres.models import ERPConnection
from consumer.handling import RetrySettings
from consumer.worker import WorkerSettings
from domain.model import DraftOrder, OrderLine
from entrypoints.bootstrap import sql_unit_of_work
from entrypoints.orchestrator import PushOrchestrator
from entrypoints.relay_wiring import RelayConfig, build_relay
from entrypoints.worker_process import WorkerConfig, build_worker
from producer.approval import approve_draft_order
from producer.relay_settings import RelaySettings
from tests.integration._pipeline import delete_topics, relay_and_worker
from tests.seed_style import SEED_CONFIG, SEED_STYLE_TYPE, SeedStyleConnector

pytestmark = pytest.mark.integration

PARTITIONS = 3
DEADLINE = 60.0


@pytest.fixture(autouse=True)
def master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", os.urandom(32).hex())


@pytest.fixture
def connector() -> Iterator[SeedStyleConnector]:
    """The seed-style connector, registered (Step 2) for the test, then unregistered."""
    with ConnectorRegistry.isolated():
        ConnectorRegistry.register(SEED_STYLE_TYPE, SeedStyleConnector)
        instance = ConnectorRegistry.get(SEED_STYLE_TYPE)
        assert isinstance(instance, SeedStyleConnector)
        yield instance


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE erp_connection, erp_push_log, outbox_event, outbox_published, draft_order"
            )
        )
    return make_session_factory(engine)


def add_connection(factory: sessionmaker[Session], org: uuid.UUID) -> None:
    """Store the connection as the seed's integration test does (ORM row, encrypted config)."""
    encrypted = EncryptionService.encrypt_config(
        SEED_CONFIG, org_id=org, connector_type=SEED_STYLE_TYPE
    )
    with factory() as db_session:
        db_session.add(
            ERPConnection(
                org_id=org,
                connector_type=SEED_STYLE_TYPE,
                config_encrypted=encrypted,
                status="ACTIVE",
            )
        )
        db_session.commit()


def make_order(org: uuid.UUID) -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=f"SO-{uuid.uuid4().hex[:8]}",
        customer_code="CUST-1",
        lines=(OrderLine(1, "SKU-1", Decimal("2"), Decimal("9.99")),),
    )


def push_log(engine: Engine, order: DraftOrder) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT attempt, status, error_message, created_at, updated_at"
                    " FROM erp_push_log WHERE draft_order_id = :id ORDER BY attempt"
                ),
                {"id": order.id},
            )
        )


def assert_retried_on_time(
    rows: list[Any], connector: SeedStyleConnector, order: DraftOrder
) -> None:
    """Attempts 0, 1, 2; each retry claimed no earlier than its delay after the failure."""
    assert [(r.attempt, r.status) for r in rows] == [
        (0, "RETRYING"),
        (1, "RETRYING"),
        (2, "SUCCESS"),
    ]
    assert rows[0].error_message == "MyERP export failed: the MyERP API did not answer within 5 s"
    for attempt, delay in ((1, 1.0), (2, 2.0)):
        waited = rows[attempt].created_at - rows[attempt - 1].updated_at
        assert waited >= timedelta(seconds=delay), (attempt, waited)
    starts = connector.calls[order.id]
    assert len(starts) == 3
    assert starts[1] - starts[0] >= 1.0
    assert starts[2] - starts[1] >= 2.0


def test_push_order_retries_a_seed_style_timeout_with_1s_and_2s_delays(
    factory: sessionmaker[Session], engine: Engine, connector: SeedStyleConnector
) -> None:
    org = uuid.uuid4()
    add_connection(factory, org)
    order = make_order(org)
    sleeps: list[float] = []

    def recording_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    with factory() as db_session:
        result = PushOrchestrator(db_session, sleep=recording_sleep).push_order(
            org, order, max_retries=3, retry_delay_base=1.0
        )

    assert (result.status, result.attempt) == ("SUCCESS", 2)
    # The orchestrator sleeps what is left of each delay after recording the failure.
    assert len(sleeps) == 2
    assert 0.9 < sleeps[0] <= 1.0 and 1.9 < sleeps[1] <= 2.0, sleeps
    assert_retried_on_time(push_log(engine, order), connector, order)


def read_results(bootstrap: str, topic: str, expected: int) -> list[dict[str, Any]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"it-seed-retry-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + DEADLINE
        while len(found) < expected and time.monotonic() < deadline:
            for message in consumer.consume(100, 0.3):
                value = message.value()
                if message.error() is None and value is not None:
                    found.append(decode_push_result(value))
        return found
    finally:
        consumer.close()


def test_the_worker_retries_a_seed_style_timeout_on_its_tiers_after_1s_and_2s(
    migrated_db_url: str,
    kafka_bootstrap_servers: str,
    factory: sessionmaker[Session],
    engine: Engine,
    connector: SeedStyleConnector,
) -> None:
    prefix = f"it-seed-retry-{uuid.uuid4().hex[:10]}"
    topics = TopicNames(prefix, retry_tiers=3)
    config = WorkerConfig(
        bootstrap_servers=kafka_bootstrap_servers,
        database_url=migrated_db_url,
        topic_prefix=prefix,
        group_id=f"{prefix}-group",
        partitions=PARTITIONS,
        worker=WorkerSettings(
            concurrency=2,
            retry=RetrySettings(max_retries=3, retry_delay_base=1.0, retry_tiers=3),
            drain_timeout_s=10,
        ),
    )
    worker = build_worker(config, registry=ConnectorRegistry)
    relay = build_relay(
        RelayConfig(
            database_url=migrated_db_url,
            bootstrap_servers=kafka_bootstrap_servers,
            topic_prefix=prefix,
            partitions=PARTITIONS,
        ),
        RelaySettings(idle_poll_s=0.1),
    )
    org = uuid.uuid4()
    add_connection(factory, org)
    order = make_order(org)
    try:
        with relay_and_worker(relay, worker, config, DEADLINE):
            approve_draft_order(sql_unit_of_work(session_factory=factory), org, order)
            results = read_results(kafka_bootstrap_servers, topics.results, 1)
    finally:
        delete_topics(kafka_bootstrap_servers, topics.all())

    assert [(r["status"], r["attempt"]) for r in results] == [("SUCCESS", 2)]
    assert results[0]["connector_type"] == SEED_STYLE_TYPE
    assert_retried_on_time(push_log(engine, order), connector, order)
