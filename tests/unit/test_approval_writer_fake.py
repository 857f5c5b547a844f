"""The approval writer contract against the in-memory fake unit tests use."""

from __future__ import annotations

from domain.repositories import UnitOfWork
from tests.contract.approval_writer_contract import ApprovalWriterContract
from tests.fakes import FakeUnitOfWork


class TestFakeApprovalWriter(ApprovalWriterContract):
    def new_uow(self) -> UnitOfWork:
        return FakeUnitOfWork()
