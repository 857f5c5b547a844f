"""The schema on a real PostgreSQL: migrations, constraints and model validation."""

from __future__ import annotations

import select
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.postgres import migrate
from adapters.postgres.admin import temporary_database
from adapters.postgres.models import (
    OUTBOX_NOTIFY_CHANNEL,
    Base,
    DraftOrderRow,
    ERPConnection,
    ERPPushLog,
    OutboxEventRow,
)

pytestmark = pytest.mark.integration

TABLES = {"erp_connection", "erp_push_log", "draft_order", "outbox_event", "outbox_published"}


@pytest.fixture(scope="module")
def empty_db(database_url: str) -> Iterator[str]:
    with temporary_database(database_url, prefix="orderflow_t_schema") as url:
        yield url


@pytest.fixture(scope="module")
def engine(empty_db: str) -> Iterator[Engine]:
    migrate.upgrade(empty_db)
    eng = create_engine(empty_db)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s:
        yield s
        s.rollback()
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(sorted(TABLES))))


def _connection(org: uuid.UUID, status: str = "ACTIVE", ctype: str = "MOCK") -> ERPConnection:
    return ERPConnection(
        org_id=org, connector_type=ctype, config_encrypted=b"\x01blob", status=status
    )


def _push_log(key: str, status: str = "PENDING") -> ERPPushLog:
    return ERPPushLog(
        org_id=uuid.uuid4(),
        draft_order_id=uuid.uuid4(),
        connector_type="MOCK",
        status=status,
        idempotency_key=key,
    )


# -- migrations -----------------------------------------------------------------


def test_migrations_upgrade_from_empty_and_downgrade_to_empty(database_url: str) -> None:
    with temporary_database(database_url, prefix="orderflow_t_migrate") as url:
        assert migrate.current_revision(url) is None

        migrate.upgrade(url)
        eng = create_engine(url)
        try:
            assert set(inspect(eng).get_table_names()) >= TABLES
            assert migrate.current_revision(url) == migrate.head_revision()

            migrate.downgrade(url, "base")
            assert set(inspect(eng).get_table_names()) == {"alembic_version"}
            with eng.connect() as conn:
                leftover = conn.execute(
                    text("SELECT count(*) FROM pg_proc WHERE proname = 'outbox_event_notify'")
                ).scalar_one()
            assert leftover == 0
            assert migrate.current_revision(url) is None

            migrate.upgrade(url, "head")  # and up again, from a downgraded database
            assert set(inspect(eng).get_table_names()) >= TABLES
        finally:
            eng.dispose()


def test_migrations_create_exactly_what_the_models_declare(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []


def test_seed_columns_and_index_names(engine: Engine) -> None:
    insp = inspect(engine)
    columns = {c["name"]: c for c in insp.get_columns("erp_push_log")}
    assert {
        "id",
        "org_id",
        "draft_order_id",
        "connector_type",
        "status",
        "request_json",
        "response_json",
        "error_message",
        "idempotency_key",
        "retry_count",
        "latency_ms",
        "created_at",
        "updated_at",
        "lease_expires_at",
        "attempt",
        "push_round",
        "previous_idempotency_key",
    } == set(columns)
    assert columns["push_round"]["nullable"] is False
    assert columns["previous_idempotency_key"]["nullable"] is True
    assert str(columns["request_json"]["type"]) == "JSONB"
    indexes = {i["name"]: i for i in insp.get_indexes("erp_push_log")}
    assert indexes["idx_erp_push_log_idempotency"]["unique"]
    assert indexes["idx_erp_push_log_idempotency"]["column_names"] == ["idempotency_key"]
    assert indexes["idx_erp_push_log_org_order"]["column_names"] == ["org_id", "draft_order_id"]
    conn_columns = {c["name"]: c for c in insp.get_columns("erp_connection")}
    assert str(conn_columns["config_encrypted"]["type"]) == "BYTEA"
    assert {c["name"] for c in insp.get_columns("outbox_event")} >= {"id", "value"}
    # Revision 0004: the relay deletes what it sent and records it here, never rewrites a row.
    assert "published_at" not in {c["name"] for c in insp.get_columns("outbox_event")}
    assert {c["name"] for c in insp.get_columns("outbox_published")} >= {"id", "published_at"}


# -- erp_connection -------------------------------------------------------------


def test_one_active_connection_per_organisation(session: Session) -> None:
    org = uuid.uuid4()
    session.add(_connection(org))
    session.commit()

    session.add(_connection(org, ctype="DROPZONE_JSON_V1"))
    with pytest.raises(IntegrityError, match="idx_erp_connection_active_org"):
        session.commit()
    session.rollback()

    # Disabled connections do not count, and other organisations are independent.
    session.add_all(
        [_connection(org, "DISABLED"), _connection(org, "DISABLED"), _connection(uuid.uuid4())]
    )
    session.commit()


def test_connection_status_is_checked(session: Session) -> None:
    session.add(_connection(uuid.uuid4(), status="PAUSED"))
    with pytest.raises(IntegrityError, match="ck_erp_connection_status"):
        session.commit()


def test_connection_defaults(session: Session) -> None:
    row = ERPConnection(org_id=uuid.uuid4(), connector_type="MOCK", config_encrypted=b"x")
    session.add(row)
    session.commit()
    assert row.status == "ACTIVE"
    assert isinstance(row.id, uuid.UUID)
    assert row.created_at.tzinfo is not None
    assert row.last_test_at is None


@pytest.mark.parametrize(
    ("ctype", "shown"),
    [
        ("NOT_A_CONNECTOR", "NOT_A_CONNECTOR"),
        ("SAP", "SAP"),  # named by the seed, but no connector is registered for it
        ("EDI", "EDI"),
        ("mock", "mock"),  # lower case: the same format, no quotes
        ("lower case", "lower case"),
        ("", ""),
        ("MOCK\nforged log line", "MOCK\\nforged log line"),
        (42, "42"),
        (None, "None"),
    ],
)
def test_connector_type_is_validated_with_the_seed_message(ctype: Any, shown: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        _connection(uuid.uuid4(), ctype=ctype)
    assert str(excinfo.value) == f"Invalid connector_type: {shown}"


def test_the_registered_types_are_accepted() -> None:
    for registered in ("DROPZONE_JSON_V1", "MOCK", "TRYTON"):
        assert _connection(uuid.uuid4(), ctype=registered).connector_type == registered


def test_a_stored_row_of_a_type_no_longer_registered_still_loads(session: Session) -> None:
    """The type is checked when a row is created, not when it is loaded."""
    row_id = uuid.uuid4()
    session.execute(
        text(
            "INSERT INTO erp_connection (id, org_id, connector_type, config_encrypted)"
            " VALUES (:id, :org, 'SAP', '\\x01')"
        ),
        {"id": row_id, "org": uuid.uuid4()},
    )
    session.commit()
    session.expunge_all()
    loaded = session.get(ERPConnection, row_id)
    assert loaded is not None
    assert loaded.connector_type == "SAP"


def test_without_a_wired_registry_new_rows_are_refused_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adapters.postgres import models

    monkeypatch.setattr(models, "_registered_types", None)
    with pytest.raises(RuntimeError, match="no connector registry is wired in"):
        _connection(uuid.uuid4())


def test_connector_types_known_to_the_registry_are_accepted() -> None:
    from adapters.connectors.mock import MockConnector
    from adapters.connectors.registry import ConnectorRegistry

    name = "ACME_ERP_TEST"
    with ConnectorRegistry.isolated():
        ConnectorRegistry.register(name, MockConnector)
        assert _connection(uuid.uuid4(), ctype=name).connector_type == name
    with pytest.raises(ValueError, match=f"Invalid connector_type: {name}"):
        _connection(uuid.uuid4(), ctype=name)


# -- erp_push_log ---------------------------------------------------------------


def test_duplicate_idempotency_key_raises_integrity_error_naming_the_seed_index(
    session: Session,
) -> None:
    session.add(_push_log("erp-push:a:b:0"))
    session.commit()
    session.add(_push_log("erp-push:a:b:0"))
    with pytest.raises(IntegrityError) as excinfo:
        session.commit()
    message = str(excinfo.value)
    assert "duplicate key value violates unique constraint" in message
    assert '"idx_erp_push_log_idempotency"' in message


@pytest.mark.parametrize("status", ["SUCCESS", "FAILED", "PENDING", "RETRYING"])
def test_push_log_accepts_the_seed_statuses(session: Session, status: str) -> None:
    session.add(_push_log(f"k-{status}", status))
    session.commit()


def test_push_log_status_is_checked(session: Session) -> None:
    session.add(_push_log("k-bad", "DONE"))
    with pytest.raises(IntegrityError, match="ck_erp_push_log_status"):
        session.commit()


def test_push_log_defaults(session: Session) -> None:
    row = _push_log("k-defaults")
    session.add(row)
    session.commit()
    assert (row.retry_count, row.attempt) == (0, 0)
    assert row.request_json is None


# -- draft_order and outbox_event -------------------------------------------------


def _draft(org: uuid.UUID, number: str, **kw: object) -> DraftOrderRow:
    return DraftOrderRow(
        id=uuid.uuid4(), org_id=org, order_number=number, customer_code="C", lines=[], **kw
    )


def test_order_number_is_unique_per_organisation(session: Session) -> None:
    org = uuid.uuid4()
    session.add_all([_draft(org, "SO-1"), _draft(uuid.uuid4(), "SO-1")])
    session.commit()
    session.add(_draft(org, "SO-1"))
    with pytest.raises(IntegrityError, match="uq_draft_order_org_order_number"):
        session.commit()


def test_draft_order_status_and_approved_at_are_checked(session: Session) -> None:
    session.add(_draft(uuid.uuid4(), "SO-2", status="SHIPPED"))
    with pytest.raises(IntegrityError, match="ck_draft_order_status"):
        session.commit()
    session.rollback()
    session.add(_draft(uuid.uuid4(), "SO-3", status="APPROVED"))  # no approved_at
    with pytest.raises(IntegrityError, match="ck_draft_order_approved_at"):
        session.commit()
    session.rollback()
    session.add(_draft(uuid.uuid4(), "SO-4", status="APPROVED", approved_at=datetime.now(UTC)))
    session.commit()


def _event(**kw: object) -> OutboxEventRow:
    values: dict[str, object] = {
        "event_id": uuid.uuid4(),
        "aggregate_type": "DraftOrder",
        "aggregate_id": uuid.uuid4(),
        "org_id": uuid.uuid4(),
        "event_type": "PushRequested",
        "payload": {"a": 1},
        "headers": {"event_type": "PushRequested"},
    }
    values.update(kw)
    return OutboxEventRow(**values)


def test_outbox_ids_follow_insert_order_and_event_ids_are_unique(session: Session) -> None:
    rows = [_event() for _ in range(3)]
    for row in rows:
        session.add(row)
        session.flush()
    session.commit()
    ids = [row.id for row in rows]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    session.add(_event(event_id=rows[0].event_id))
    with pytest.raises(IntegrityError, match="uq_outbox_event_event_id"):
        session.commit()


def test_outbox_insert_notifies_listeners_at_commit(engine: Engine, session: Session) -> None:
    listener = engine.raw_connection()
    try:
        pg = listener.driver_connection
        assert pg is not None
        pg.autocommit = True  # LISTEN takes effect at once, not at a commit
        pg.cursor().execute(f"LISTEN {OUTBOX_NOTIFY_CHANNEL}")
        session.add(_event())
        session.flush()
        pg.poll()
        assert pg.notifies == []  # not before commit
        session.commit()
        ready, _, _ = select.select([pg], [], [], 5.0)
        assert ready, "no NOTIFY within 5 s"
        pg.poll()
        assert [n.channel for n in pg.notifies] == [OUTBOX_NOTIFY_CHANNEL]
    finally:
        listener.close()
