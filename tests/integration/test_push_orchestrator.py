"""PushOrchestrator end to end on a real PostgreSQL, with AES-GCM encrypted
connection configs and the MockConnector."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.connectors.mock import MockConnector
from adapters.connectors.registry import ConnectorRegistry
from adapters.crypto.encryption import EncryptionService
from adapters.postgres.engine import make_session_factory
from adapters.postgres.models import ERPConnection, ERPPushLog
from adapters.postgres.repositories import SqlPushLogStore
from adapters.postgres.unit_of_work import SqlAlchemyUnitOfWork
from domain.idempotency import export_key, generate_idempotency_key
from domain.model import DraftOrder, OrderLine, PushStatus
from domain.ports import ERPConnectorPort
from domain.records import PushLogEntry, order_to_json
from entrypoints import bootstrap
from entrypoints.orchestrator import PushOrchestrator

pytestmark = pytest.mark.integration

API_KEY = "mock-api-key-\u00e9-7f3a9c"


@pytest.fixture
def factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    yield make_session_factory(engine)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE erp_connection, erp_push_log"))


@pytest.fixture(autouse=True)
def master_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = os.urandom(32).hex()
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", key)
    return key


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


def make_order(org: uuid.UUID) -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=f"SO-{uuid.uuid4().hex[:6]}",
        customer_code="CUST-1",
        lines=(OrderLine(1, "P-1", Decimal("2"), Decimal("10.00")),),
    )


def add_connection(
    factory: sessionmaker[Session],
    org: uuid.UUID,
    config: Mapping[str, Any],
    *,
    encrypt_for: uuid.UUID | None = None,
) -> None:
    blob = EncryptionService.encrypt_config(
        config, org_id=encrypt_for or org, connector_type="MOCK"
    )
    with factory() as session:
        session.add(
            ERPConnection(org_id=org, connector_type="MOCK", config_encrypted=blob, status="ACTIVE")
        )
        session.commit()


def orchestrator(
    factory: sessionmaker[Session], registry: SharedMock, sleeps: list[float] | None = None
) -> PushOrchestrator:
    return bootstrap.build_push_orchestrator(
        uow=SqlAlchemyUnitOfWork(factory),
        registry=registry,
        sleep=(sleeps.append if sleeps is not None else None),
    )


def rows(factory: sessionmaker[Session], order: DraftOrder) -> list[ERPPushLog]:
    with factory() as s:
        return list(
            s.scalars(
                select(ERPPushLog)
                .where(ERPPushLog.draft_order_id == order.id)
                .order_by(ERPPushLog.attempt)
            )
        )


def test_seed_usage_push_order_with_a_db_session(factory: sessionmaker[Session]) -> None:
    org = uuid.uuid4()
    add_connection(factory, org, {"mode": "success"})
    order = make_order(org)

    with factory() as db_session:
        result = PushOrchestrator(db_session).push_order(org_id=org, draft_order=order)

    assert result.status == "SUCCESS"
    [row] = rows(factory, order)
    assert row.status == "SUCCESS"
    assert row.id == result.id
    assert row.connector_type == "MOCK"
    assert row.idempotency_key == generate_idempotency_key(org, order.id, 0)
    assert row.request_json == order_to_json(order)
    assert row.response_json is not None
    assert row.response_json["storage_key"] == f"mock/{export_key(org, order.id)}"
    assert row.latency_ms is not None and row.latency_ms >= 0
    assert row.retry_count == 0
    assert row.lease_expires_at is None


def test_pushing_again_returns_the_success_and_calls_the_erp_once(
    factory: sessionmaker[Session],
) -> None:
    org = uuid.uuid4()
    add_connection(factory, org, {"mode": "success"})
    registry = SharedMock()
    order = make_order(org)
    push = orchestrator(factory, registry)

    first = push.push_order(org, order)
    second = push.push_order(org, order)
    third = orchestrator(factory, registry).push_order(org, order)

    assert first.status == "SUCCESS"
    assert second == first
    assert third == first
    assert registry.calls(order) == 1
    assert push.check_idempotency(first.idempotency_key) == first


def test_transient_failures_are_retried_with_backoff(factory: sessionmaker[Session]) -> None:
    org = uuid.uuid4()
    add_connection(factory, org, {"mode": "transient", "fail_times": 2})
    registry = SharedMock()
    sleeps: list[float] = []
    order = make_order(org)

    result = orchestrator(factory, registry, sleeps).push_order(
        org, order, max_retries=3, retry_delay_base=0.01
    )

    assert result.status == "SUCCESS"
    assert result.retry_count == 2
    assert sleeps == [0.01, 0.02]
    assert [(r.status, r.retry_count) for r in rows(factory, order)] == [
        ("RETRYING", 0),
        ("RETRYING", 1),
        ("SUCCESS", 2),
    ]
    assert registry.calls(order) == 3


def test_exhausted_retries_fail(factory: sessionmaker[Session]) -> None:
    org = uuid.uuid4()
    add_connection(factory, org, {"mode": "transient", "fail_times": 0})
    order = make_order(org)
    result = orchestrator(factory, SharedMock(), []).push_order(
        org, order, max_retries=1, retry_delay_base=0
    )
    assert result.status == "FAILED"
    assert result.error_message == ("Mock ERP temporarily unavailable (gave up after 2 attempts)")
    assert [r.status for r in rows(factory, order)] == ["RETRYING", "FAILED"]


def test_permanent_failure(factory: sessionmaker[Session]) -> None:
    org = uuid.uuid4()
    add_connection(factory, org, {"mode": "fail"})
    order = make_order(org)
    result = orchestrator(factory, SharedMock(), []).push_order(org, order)
    assert result.status == "FAILED"
    assert result.error_message == "Mock ERP rejected the order"
    assert len(rows(factory, order)) == 1


def test_no_active_connection(factory: sessionmaker[Session]) -> None:
    org = uuid.uuid4()
    order = make_order(org)
    result = orchestrator(factory, SharedMock(), []).push_order(org, order)
    assert result.status == "FAILED"
    assert result.error_message == f"No active ERP connection for organisation {org}"
    [row] = rows(factory, order)
    assert row.connector_type is None


def test_config_copied_from_another_organisation_does_not_decrypt(
    factory: sessionmaker[Session],
) -> None:
    org = uuid.uuid4()
    add_connection(factory, org, {"mode": "success"}, encrypt_for=uuid.uuid4())
    registry = SharedMock()
    order = make_order(org)
    result = orchestrator(factory, registry, []).push_order(org, order)
    assert result.status == "FAILED"
    assert result.error_message is not None
    assert result.error_message.startswith("Could not decrypt the MOCK connection config")
    assert registry.calls(order) == 0


def test_secrets_never_reach_the_database(factory: sessionmaker[Session], engine: Engine) -> None:
    org = uuid.uuid4()
    add_connection(factory, org, {"api_key": API_KEY, "expected_api_key": API_KEY + "-other"})
    order = make_order(org)

    result = orchestrator(factory, SharedMock(), []).push_order(org, order)

    assert result.status == "FAILED"
    assert result.error_message == "Mock ERP authentication failed"
    with engine.connect() as conn:
        dumped = conn.execute(
            text("SELECT string_agg(row_to_json(l)::text, '') FROM erp_push_log l")
        ).scalar_one()
        blob = conn.execute(text("SELECT config_encrypted FROM erp_connection")).scalar_one()
    assert API_KEY not in dumped
    assert API_KEY.encode() not in bytes(blob)


def test_claim_race_between_two_sessions_has_one_winner(
    factory: sessionmaker[Session],
) -> None:
    now = datetime.now(UTC)

    def entry() -> PushLogEntry:
        return PushLogEntry.pending(
            org_id=uuid.uuid4(),
            draft_order_id=uuid.uuid4(),
            idempotency_key="erp-push:race",
            attempt=0,
            now=now,
            lease_expires_at=now + timedelta(minutes=5),
        )

    first, second = factory(), factory()
    try:
        won = SqlPushLogStore(first).claim(entry())
        assert won is not None  # inserted, not yet committed
        loser: list[PushLogEntry | None] = []
        racer = threading.Thread(
            target=lambda: loser.append(SqlPushLogStore(second).claim(entry()))
        )
        racer.start()
        racer.join(timeout=0.5)
        assert racer.is_alive(), "the second claim must wait for the first transaction"
        first.commit()
        racer.join(timeout=10)
        assert loser == [None]
        second.commit()
    finally:
        first.close()
        second.close()
    with factory() as s:
        ids = s.scalars(select(ERPPushLog.id).where(ERPPushLog.idempotency_key == "erp-push:race"))
        assert list(ids) == [won.id]


def test_claim_race_winner_rolling_back_lets_the_other_win(
    factory: sessionmaker[Session],
) -> None:
    now = datetime.now(UTC)

    def make() -> PushLogEntry:
        return PushLogEntry.pending(
            org_id=uuid.uuid4(),
            draft_order_id=uuid.uuid4(),
            idempotency_key="erp-push:race2",
            attempt=0,
            now=now,
            lease_expires_at=now + timedelta(minutes=5),
        )

    first, second = factory(), factory()
    try:
        assert SqlPushLogStore(first).claim(make()) is not None
        result: list[PushLogEntry | None] = []
        racer = threading.Thread(
            target=lambda: result.append(SqlPushLogStore(second).claim(make()))
        )
        racer.start()
        racer.join(timeout=0.3)
        first.rollback()
        racer.join(timeout=10)
        assert len(result) == 1 and result[0] is not None
        second.commit()
    finally:
        first.close()
        second.close()


def test_concurrent_pushes_of_one_order_call_the_erp_once(
    factory: sessionmaker[Session],
) -> None:
    org = uuid.uuid4()
    add_connection(factory, org, {"mode": "success", "latency_ms": 300})
    registry = SharedMock()
    order = make_order(org)
    barrier = threading.Barrier(5)
    results: list[PushLogEntry] = []
    lock = threading.Lock()

    def push() -> None:
        barrier.wait()
        result = orchestrator(factory, registry, []).push_order(org, order)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=push) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert registry.calls(order) == 1
    assert len(results) == 5
    statuses = sorted(r.status.value for r in results)
    assert statuses.count("SUCCESS") >= 1
    assert set(statuses) <= {"SUCCESS", "PENDING"}
    assert len({r.id for r in results}) == 1
    [row] = rows(factory, order)
    assert row.status == "SUCCESS"


def test_claim_of_a_dead_worker_is_taken_over(factory: sessionmaker[Session]) -> None:
    org = uuid.uuid4()
    add_connection(factory, org, {"mode": "success"})
    registry = SharedMock()
    order = make_order(org)
    past = datetime.now(UTC) - timedelta(minutes=30)
    key = generate_idempotency_key(org, order.id, 0)
    with factory() as s:
        SqlPushLogStore(s).claim(
            PushLogEntry.pending(
                org_id=org,
                draft_order_id=order.id,
                idempotency_key=key,
                attempt=0,
                now=past,
                lease_expires_at=past + timedelta(minutes=5),
                connector_type="MOCK",
                request_json=order_to_json(order),
            )
        )
        s.commit()

    result = orchestrator(factory, registry, []).push_order(org, order)

    assert result.status is PushStatus.SUCCESS
    assert result.idempotency_key == key
    assert registry.calls(order) == 1
    assert len(rows(factory, order)) == 1


def test_session_orchestrator_refuses_other_objects() -> None:
    with pytest.raises(TypeError, match=r"sqlalchemy\.orm\.Session"):
        PushOrchestrator(object())
