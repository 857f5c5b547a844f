"""The seed's encryption as written, pushed on a real PostgreSQL.

The seed stores ``EncryptionService.encrypt_config(config)`` (no organisation, no
connector type: an unbound blob) in an ``ERPConnection`` row and expects
``PushOrchestrator(db_session).push_order(...)`` to succeed. With
``ENCRYPTION_REQUIRE_BOUND=1`` the same push fails naming the variable and the fix,
and after ``orderflow keys rewrap`` a push succeeds again. ``connections create``,
which knows the context, stores bound blobs.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.crypto.encryption import EncryptionError, EncryptionService, blob_is_bound
from adapters.crypto.keys import REQUIRE_BOUND_ENV
from adapters.postgres.engine import make_session_factory
from adapters.postgres.models import ERPConnection, ERPPushLog
from domain.model import DraftOrder, OrderLine
from entrypoints.cli import EXIT_FAILED, EXIT_OK, main
from entrypoints.orchestrator import PushOrchestrator

pytestmark = pytest.mark.integration


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    factory: sessionmaker[Session] = make_session_factory(engine)
    with factory() as session:
        yield session
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE erp_connection, erp_push_log"))


@pytest.fixture(autouse=True)
def master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", os.urandom(32).hex())
    monkeypatch.delenv("ENCRYPTION_OLD_KEYS", raising=False)
    monkeypatch.delenv(REQUIRE_BOUND_ENV, raising=False)


def draft_order(org_id: uuid.UUID) -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org_id,
        order_number=f"SO-{uuid.uuid4().hex[:6]}",
        customer_code="CUST-1",
        lines=(OrderLine(1, "P-1", Decimal("2"), Decimal("10.00")),),
    )


def store_seed_connection(db_session: Session, org_id: uuid.UUID) -> bytes:
    """The seed's integration test, step by step."""
    config = {"mode": "success"}
    encrypted = EncryptionService.encrypt_config(config)

    connection = ERPConnection(
        org_id=org_id,
        connector_type="MOCK",
        config_encrypted=encrypted,
        status="ACTIVE",
    )
    db_session.add(connection)
    db_session.commit()
    return encrypted


def test_seed_unbound_config_pushes_successfully(db_session: Session) -> None:
    org_id = uuid.uuid4()
    encrypted = store_seed_connection(db_session, org_id)
    assert not blob_is_bound(encrypted)

    orchestrator = PushOrchestrator(db_session)
    result = orchestrator.push_order(org_id, draft_order(org_id))

    assert result.status == "SUCCESS", result.error_message
    statuses = db_session.scalars(
        select(ERPPushLog.status).where(ERPPushLog.org_id == org_id)
    ).all()
    assert statuses == ["SUCCESS"]


def test_require_bound_refuses_the_seed_config_until_rewrap_binds_it(
    db_session: Session, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id = uuid.uuid4()
    store_seed_connection(db_session, org_id)
    monkeypatch.setenv(REQUIRE_BOUND_ENV, "1")

    refused = PushOrchestrator(db_session).push_order(org_id, draft_order(org_id))
    assert refused.status == "FAILED"
    assert refused.error_message is not None
    assert f"{REQUIRE_BOUND_ENV}=1" in refused.error_message
    assert "orderflow keys rewrap" in refused.error_message

    monkeypatch.setenv("DATABASE_URL", migrated_db_url)
    out = io.StringIO()
    assert main(["keys", "rewrap"], out=out) == EXIT_OK
    assert json.loads(out.getvalue())["bound"] == 1
    db_session.expire_all()
    [stored] = db_session.scalars(
        select(ERPConnection.config_encrypted).where(ERPConnection.org_id == org_id)
    ).all()
    assert blob_is_bound(stored)

    # A new order of the same organisation now pushes under the strict setting.
    result = PushOrchestrator(db_session).push_order(org_id, draft_order(org_id))
    assert result.status == "SUCCESS", result.error_message


# --- where the project knows the context, it binds ----------------------------------------


def test_connections_create_stores_a_bound_blob(
    db_session: Session, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    org_id = uuid.uuid4()
    config = tmp_path / "config.json"
    config.write_text('{"mode": "success"}', encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", migrated_db_url)
    argv = ["connections", "create", "--org", str(org_id), "--type", "MOCK"]
    assert main([*argv, "--config-file", str(config)], out=io.StringIO()) == EXIT_OK
    [stored] = db_session.scalars(
        select(ERPConnection.config_encrypted).where(ERPConnection.org_id == org_id)
    ).all()
    assert blob_is_bound(stored)
    with pytest.raises(EncryptionError, match="authentication tag verification failed"):
        EncryptionService.decrypt_config(stored, org_id=uuid.uuid4(), connector_type="MOCK")


@pytest.mark.parametrize("value", ["yes", "2"])
def test_a_bad_require_bound_value_is_a_one_line_cli_error(
    migrated_db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated_db_url)
    monkeypatch.setenv(REQUIRE_BOUND_ENV, value)
    assert main(["keys", "rewrap", "--dry-run"], out=io.StringIO()) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err == (
        f"orderflow: error: {REQUIRE_BOUND_ENV} must be 0 or 1 (or unset), got {value!r}\n"
    )
