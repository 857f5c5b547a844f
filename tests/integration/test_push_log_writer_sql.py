"""The push-log writer contract against the SQL writer on real PostgreSQL.

Twice: on the writer's own autocommit connection (the push worker's
pipelines) and in a caller's SQLAlchemy session (``PushOrchestrator(db_session)``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.postgres.engine import make_session_factory
from adapters.postgres.push_log_sql import PushLogBatchWriter
from adapters.postgres.unit_of_work import SqlAlchemyUnitOfWork
from domain.push_writes import PushLogWriter
from domain.repositories import UnitOfWork
from tests.contract.push_log_writer_contract import PushLogWriterContract, encode

pytestmark = pytest.mark.integration

_TABLES = "TRUNCATE erp_push_log, outbox_event, outbox_published, erp_connection"


class _OnPostgres(PushLogWriterContract):
    @pytest.fixture(autouse=True)
    def _database(self, engine: Engine, migrated_db_url: str) -> Iterator[None]:
        with engine.begin() as conn:
            conn.execute(text(_TABLES))
        self.engine = engine
        self.url = migrated_db_url
        self.factory: sessionmaker[Session] = make_session_factory(engine)
        self.closers: list[PushLogBatchWriter | Session] = []
        yield
        for closer in self.closers:
            closer.close()
        with engine.begin() as conn:
            conn.execute(text(_TABLES))


class TestPushLogBatchWriterOnItsConnection(_OnPostgres):
    def new_world(self) -> tuple[PushLogWriter, UnitOfWork]:
        writer = PushLogBatchWriter(self.url, encoder=encode)
        self.closers.append(writer)
        return writer, SqlAlchemyUnitOfWork(self.factory)


class TestPushLogBatchWriterInASession(_OnPostgres):
    def new_world(self) -> tuple[PushLogWriter, UnitOfWork]:
        session = self.factory()
        self.closers.append(session)
        return PushLogBatchWriter.on_session(session, encoder=encode), SqlAlchemyUnitOfWork(
            self.factory
        )
