"""The push-log writer contract against the in-memory fake unit tests use."""

from __future__ import annotations

from domain.push_writes import PushLogWriter
from domain.repositories import UnitOfWork
from tests.contract.push_log_writer_contract import PushLogWriterContract, encode
from tests.fakes import FakeDatabase, FakeUnitOfWork
from tests.push_log_fakes import FakePushLogWriter


class TestFakePushLogWriter(PushLogWriterContract):
    def new_world(self) -> tuple[PushLogWriter, UnitOfWork]:
        db = FakeDatabase()
        return FakePushLogWriter(FakeUnitOfWork(db), encoder=encode), FakeUnitOfWork(db)
