"""Any draft order object through ``approve_draft_order`` and ``push_order`` on real PostgreSQL.

A mapping is approved, the ``DraftOrderRow`` ORM row read back in the
caller's session is pushed with the seed's ``PushOrchestrator(db_session)``;
bad input raises one ``InvalidDraftOrder`` and leaves every table untouched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.crypto.encryption import EncryptionService
from adapters.postgres.engine import make_session_factory
from adapters.postgres.models import DraftOrderRow, ERPConnection, ERPPushLog, OutboxEventRow
from adapters.postgres.unit_of_work import SqlAlchemyUnitOfWork
from domain.order_input import InvalidDraftOrder
from entrypoints.orchestrator import PushOrchestrator
from producer.approval import approve_draft_order

pytestmark = pytest.mark.integration


@pytest.fixture
def factory(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[sessionmaker[Session]]:
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", os.urandom(32).hex())
    yield make_session_factory(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE draft_order, outbox_event, outbox_published, erp_connection, erp_push_log"
            )
        )


def counts(factory: sessionmaker[Session], org: uuid.UUID) -> dict[str, int]:
    with factory() as s:
        return {
            model.__tablename__: s.scalar(
                select(func.count()).select_from(model).where(model.org_id == org)
            )
            or 0
            for model in (DraftOrderRow, OutboxEventRow, ERPPushLog)
        }


def connect(factory: sessionmaker[Session], org: uuid.UUID) -> None:
    blob = EncryptionService.encrypt_config({"mode": "success"}, org_id=org, connector_type="MOCK")
    with factory() as session:
        session.add(
            ERPConnection(org_id=org, connector_type="MOCK", config_encrypted=blob, status="ACTIVE")
        )
        session.commit()


def order_json(order_id: uuid.UUID) -> dict[str, object]:
    return {
        "id": str(order_id),
        "order_number": f"SO-{order_id.hex[:8]}",
        "customer_code": "C-1",
        "lines": [{"line_no": 1, "product_code": "P-1", "quantity": "2", "unit_price": "9.50"}],
    }


def test_a_mapping_is_approved_and_the_orm_row_pushed(factory: sessionmaker[Session]) -> None:
    org, order_id = uuid.uuid4(), uuid.uuid4()
    connect(factory, org)
    approve_draft_order(SqlAlchemyUnitOfWork(factory), org, order_json(order_id))

    with factory() as db_session:
        row = db_session.get(DraftOrderRow, order_id)
        assert row is not None and row.status == "APPROVED"
        result = PushOrchestrator(db_session).push_order(org, row)

    assert result.status == "SUCCESS"
    assert result.draft_order_id == order_id
    assert result.request_json is not None and result.request_json["total"] == "19.00"
    assert counts(factory, org) == {"draft_order": 1, "outbox_event": 1, "erp_push_log": 1}


def test_an_application_object_without_org_is_pushed_for_the_org_given(
    factory: sessionmaker[Session],
) -> None:
    org, order_id = uuid.uuid4(), uuid.uuid4()
    connect(factory, org)
    data = order_json(order_id)
    lines = [SimpleNamespace(**line) for line in data.pop("lines")]  # type: ignore[attr-defined]
    with factory() as db_session:
        result = PushOrchestrator(db_session).push_order(org, SimpleNamespace(**data, lines=lines))
    assert result.status == "SUCCESS" and result.org_id == org


BAD = [
    {**order_json(uuid.uuid4()), "draft_order_id": str(uuid.uuid4())},
    {"id": str(uuid.uuid4()), "lines": [{"line_no": 1}]},
    SimpleNamespace(id=uuid.uuid4(), order_number="SO-X", customer_code=7, lines=None),
]


@pytest.mark.parametrize("bad", BAD, ids=["unknown key", "missing fields", "wrong type"])
def test_bad_input_writes_and_exports_nothing(factory: sessionmaker[Session], bad: object) -> None:
    org = uuid.uuid4()
    connect(factory, org)
    with pytest.raises(InvalidDraftOrder):
        approve_draft_order(SqlAlchemyUnitOfWork(factory), org, bad)
    with factory() as db_session, pytest.raises(InvalidDraftOrder):
        PushOrchestrator(db_session).push_order(org, bad)
    assert counts(factory, org) == {"draft_order": 0, "outbox_event": 0, "erp_push_log": 0}
