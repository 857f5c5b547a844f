"""The approval writer contract against the one-statement SQL writer on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.avro.outbox_values import outbox_value_encoder
from adapters.postgres.engine import make_session_factory
from adapters.postgres.unit_of_work import SqlAlchemyUnitOfWork
from domain.repositories import UnitOfWork
from tests.contract.approval_writer_contract import ApprovalWriterContract

pytestmark = pytest.mark.integration


class TestSqlApprovalWriter(ApprovalWriterContract):
    @pytest.fixture(autouse=True)
    def _factory(self, engine: Engine) -> Iterator[None]:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE draft_order, outbox_event, outbox_published"))
        self.factory: sessionmaker[Session] = make_session_factory(engine)
        yield
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE draft_order, outbox_event, outbox_published"))

    def new_uow(self) -> UnitOfWork:
        return SqlAlchemyUnitOfWork(self.factory, outbox_encoder=outbox_value_encoder())
