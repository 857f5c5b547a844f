"""The seed document's examples, run as the seed writes them, on a real PostgreSQL.

Each test below copies a code block of ``shared/seed/000_9439f69979dc2daf.txt``; the only
changes are the import paths (the seed's ``connectors.*`` and ``models`` packages are ours
``adapters.*`` / ``consumer.*``) and the fixtures the seed takes for granted (``db_session``,
``test_org``, and the module-level ``draft_order``). The connector examples of "Implementing
a New Connector" are in ``tests/unit/test_seed_connector_examples.py``.

Sections covered here: "Core Components" §3 (EncryptionService), "Security Best Practices"
§1 and §2, "Idempotency", "Retry Logic", and the integration test under "Testing".
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from adapters.crypto.encryption import EncryptionService
from adapters.postgres.engine import make_session_factory
from adapters.postgres.models import ERPConnection, ERPPushLog
from entrypoints.orchestrator import PushOrchestrator

pytestmark = pytest.mark.integration

#: The seed's integration test pushes a ``draft_order`` it never defines: an application's
#: own order object, which knows nothing of our model classes (and not its organisation:
#: ``push_order`` is told the org).
draft_order = SimpleNamespace(
    id=uuid.UUID("5eed0000-0000-4000-8000-000000000001"),
    order_number="SEED-1001",
    customer_code="CUST-100",
    currency="EUR",
    notes="",
    lines=[
        SimpleNamespace(
            line_no=1,
            product_code="SKU-001",
            quantity=Decimal("2"),
            unit_price=Decimal("9.50"),
            description="Widget",
            unit="unit",
        )
    ],
)


@pytest.fixture(autouse=True)
def master_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The seed's "Environment Variables": a fresh 32-byte key as 64 hex characters."""
    key = subprocess.run(
        [sys.executable, "-c", "import os; print(os.urandom(32).hex())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", key)
    monkeypatch.delenv("ENCRYPTION_OLD_KEYS", raising=False)
    monkeypatch.delenv("ENCRYPTION_REQUIRE_BOUND", raising=False)
    return key


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    """A SQLAlchemy session on the module's migrated database (what the seed's tests get)."""
    session = make_session_factory(engine)()
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def test_org() -> SimpleNamespace:
    """An organisation: the seed only reads its ``id``."""
    return SimpleNamespace(id=uuid.uuid4())


def _add_connection(db_session: Session, org_id: uuid.UUID, config: dict[str, Any]) -> None:
    encrypted = EncryptionService.encrypt_config(config)
    connection = ERPConnection(
        org_id=org_id,
        connector_type="MOCK",
        config_encrypted=encrypted,
        status="ACTIVE",
    )
    db_session.add(connection)
    db_session.commit()


def _rows(engine: Engine, org_id: uuid.UUID) -> list[ERPPushLog]:
    with make_session_factory(engine)() as session:
        return list(
            session.scalars(
                select(ERPPushLog).where(ERPPushLog.org_id == org_id).order_by(ERPPushLog.attempt)
            )
        )


# -- "Testing" > "Integration Tests", verbatim --------------------------------------------


def test_push_order_with_mock_connector(db_session, test_org):  # type: ignore[no-untyped-def]
    # Create encrypted connection
    config = {"mode": "success"}
    encrypted = EncryptionService.encrypt_config(config)

    connection = ERPConnection(
        org_id=test_org.id, connector_type="MOCK", config_encrypted=encrypted, status="ACTIVE"
    )
    db_session.add(connection)
    db_session.commit()

    # Push order
    orchestrator = PushOrchestrator(db_session)
    result = orchestrator.push_order(test_org.id, draft_order)

    assert result.status == "SUCCESS"


def test_the_seed_integration_test_really_exported_once(
    engine: Engine, db_session: Session, test_org: SimpleNamespace
) -> None:
    """Behind the seed's one assertion: one SUCCESS row, the order as pushed, no second push."""
    _add_connection(db_session, test_org.id, {"mode": "success"})
    orchestrator = PushOrchestrator(db_session)
    first = orchestrator.push_order(test_org.id, draft_order)
    second = orchestrator.push_order(test_org.id, draft_order)
    assert second.idempotency_key == first.idempotency_key
    rows = _rows(engine, test_org.id)
    assert [(r.status, r.attempt) for r in rows] == [("SUCCESS", 0)]
    assert rows[0].draft_order_id == draft_order.id
    assert rows[0].request_json["order_number"] == "SEED-1001"
    assert rows[0].request_json["org_id"] == str(test_org.id)
    assert rows[0].request_json["total"] == "19.00"


# -- "Core Components" §3 and "Security Best Practices" §1 --------------------------------


def test_encryption_service_round_trip_as_written() -> None:
    # Encrypt configuration
    config = {"host": "sftp.example.com", "password": "secret"}
    encrypted = EncryptionService.encrypt_config(config)

    # Decrypt configuration
    config = EncryptionService.decrypt_config(encrypted)

    assert config == {"host": "sftp.example.com", "password": "secret"}
    assert b"secret" not in encrypted


def test_encrypt_before_storing_as_written(engine: Engine, db_session: Session) -> None:
    connection = ERPConnection(
        org_id=uuid.uuid4(),
        connector_type="MOCK",
        config_encrypted=b"placeholder",
        status="ACTIVE",
    )
    # Before storing in database
    config = {"api_key": "secret123"}
    encrypted = EncryptionService.encrypt_config(config)

    # Store encrypted bytes in erp_connection.config_encrypted
    connection.config_encrypted = encrypted

    db_session.add(connection)
    db_session.commit()
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT config_encrypted FROM erp_connection WHERE id = :id"),
            {"id": connection.id},
        ).scalar_one()
    assert b"secret123" not in bytes(stored)
    assert EncryptionService.decrypt_config(bytes(stored)) == {"api_key": "secret123"}


def test_master_key_from_the_seeds_command_works(master_key: str) -> None:
    assert len(master_key) == 64
    assert os.environ["ENCRYPTION_MASTER_KEY"] == master_key
    blob = EncryptionService.encrypt_config({"mode": "success"})
    assert EncryptionService.decrypt_config(blob) == {"mode": "success"}


# -- "Idempotency" --------------------------------------------------------------------------


def _idempotency_snippet(orchestrator: PushOrchestrator, org_id: uuid.UUID, order_id: Any) -> Any:
    # Same org_id + draft_order_id + attempt always generates same key
    key = orchestrator.generate_idempotency_key(org_id, order_id, attempt=0)

    # Check if already processed
    existing = orchestrator.check_idempotency(key)
    if existing:
        return existing  # Skip duplicate processing
    return None


def test_idempotency_snippet(db_session: Session, test_org: SimpleNamespace) -> None:
    _add_connection(db_session, test_org.id, {"mode": "success"})
    orchestrator = PushOrchestrator(db_session)
    assert _idempotency_snippet(orchestrator, test_org.id, draft_order.id) is None
    pushed = orchestrator.push_order(test_org.id, draft_order)
    existing = _idempotency_snippet(orchestrator, test_org.id, draft_order.id)
    assert existing is not None
    assert existing.idempotency_key == pushed.idempotency_key
    assert existing.status == "SUCCESS"
    assert orchestrator.generate_idempotency_key(
        test_org.id, draft_order.id, attempt=0
    ) == orchestrator.generate_idempotency_key(str(test_org.id), str(draft_order.id), attempt=0)


# -- "Retry Logic" --------------------------------------------------------------------------


def test_retry_snippet_waits_one_then_two_seconds(
    engine: Engine, db_session: Session, test_org: SimpleNamespace
) -> None:
    """Two transient failures, then success: attempts 0, 1, 2 with delays 1 s and 2 s."""
    _add_connection(db_session, test_org.id, {"mode": "transient", "fail_times": 2})
    org = test_org
    orchestrator = PushOrchestrator(db_session)

    result = orchestrator.push_order(
        org_id=org.id,
        draft_order=draft_order,
        max_retries=3,  # Total of 4 attempts (initial + 3 retries)
        retry_delay_base=1.0,  # Delays: 1s, 2s, 4s
    )

    assert result.status == "SUCCESS"
    rows = _rows(engine, org.id)
    assert [(r.attempt, r.status) for r in rows] == [
        (0, "RETRYING"),
        (1, "RETRYING"),
        (2, "SUCCESS"),
    ]
    # Never early: each attempt starts at least base * 2^n after the previous one ended.
    for previous, following, delay in ((rows[0], rows[1], 1.0), (rows[1], rows[2], 2.0)):
        waited = (following.created_at - previous.updated_at).total_seconds()
        assert delay <= waited < delay + 5.0, (previous.attempt, waited)
