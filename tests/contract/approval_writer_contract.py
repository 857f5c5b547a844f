"""The contract of ``domain.repositories.ApprovalWriter``, for every implementation.

A subclass gives :meth:`ApprovalWriterContract.new_uow` (a unit of work on an
empty store); every test here then runs against its ``approvals`` writer. The
in-memory fake (tests/unit) and the SQL statement on real PostgreSQL
(tests/integration) both run it.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.model import DraftOrder, DraftOrderStatus, OrderLine
from domain.records import OutboxEvent
from domain.repositories import ApprovalRefused, UnitOfWork
from producer.approval import build_push_requested

DRAFTED = datetime(2025, 1, 1, tzinfo=UTC)
NOW = DRAFTED + timedelta(days=1)


def an_order(org: uuid.UUID, number: str = "SO-1") -> DraftOrder:
    """A DRAFT order of ``org`` with two lines."""
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=number,
        customer_code="C-9",
        lines=(
            OrderLine(1, "P-1", Decimal("4"), Decimal("2.50")),
            OrderLine(2, "P-2", Decimal("1.250"), Decimal("19.99"), unit="kg"),
        ),
    )


class ApprovalWriterContract:
    """Tests every ``ApprovalWriter`` must pass (subclass and give ``new_uow``)."""

    def new_uow(self) -> UnitOfWork:
        """A unit of work on a store where only what the test writes exists."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------
    def _write(self, uow: UnitOfWork, order: DraftOrder) -> OutboxEvent | ApprovalRefused:
        approved = replace(order, status=DraftOrderStatus.APPROVED)
        event = build_push_requested(approved, occurred_at=NOW)
        with uow:
            written = uow.approvals.write(approved, event, now=NOW)
            uow.commit()
        return written

    def _add_draft(self, uow: UnitOfWork, order: DraftOrder) -> None:
        with uow:
            uow.draft_orders.add(order, now=DRAFTED)
            uow.commit()

    def _stored(self, uow: UnitOfWork, order: DraftOrder) -> DraftOrder | None:
        with uow:
            return uow.draft_orders.get(order.org_id, order.id)

    def _events(self, uow: UnitOfWork) -> list[OutboxEvent]:
        with uow:
            return list(uow.outbox.list_unpublished(100))

    # -- the contract -----------------------------------------------------------------
    def test_a_new_order_is_stored_approved_with_its_event(self) -> None:
        uow = self.new_uow()
        order = an_order(uuid.uuid4())
        written = self._write(uow, order)
        assert isinstance(written, OutboxEvent)
        assert written.id is not None and written.aggregate_id == order.id
        stored = self._stored(uow, order)
        assert stored is not None and stored.status is DraftOrderStatus.APPROVED
        assert stored.lines == order.lines
        assert [e.event_id for e in self._events(uow)] == [written.event_id]

    def test_a_draft_is_overwritten_with_the_approved_fields(self) -> None:
        uow = self.new_uow()
        order = an_order(uuid.uuid4())
        self._add_draft(uow, order)
        changed = replace(order, customer_code="C-10", notes="ring twice")
        assert isinstance(self._write(uow, changed), OutboxEvent)
        stored = self._stored(uow, order)
        assert stored is not None
        assert (stored.status, stored.customer_code, stored.notes) == (
            DraftOrderStatus.APPROVED,
            "C-10",
            "ring twice",
        )

    def test_a_second_approval_is_refused_and_writes_nothing(self) -> None:
        uow = self.new_uow()
        order = an_order(uuid.uuid4())
        assert isinstance(self._write(uow, order), OutboxEvent)
        again = self._write(uow, replace(order, customer_code="C-10"))
        assert again == ApprovalRefused("already_approved")
        stored = self._stored(uow, order)
        assert stored is not None and stored.customer_code == "C-9"
        assert len(self._events(uow)) == 1

    def test_a_taken_order_number_names_the_order_holding_it(self) -> None:
        uow = self.new_uow()
        org = uuid.uuid4()
        first = an_order(org, "SO-7")
        assert isinstance(self._write(uow, first), OutboxEvent)
        refused = self._write(uow, an_order(org, "SO-7"))
        assert isinstance(refused, ApprovalRefused)
        assert (refused.reason, refused.namesake_id) == ("order_number_taken", first.id)
        assert len(self._events(uow)) == 1

    def test_the_same_number_in_another_organisation_is_fine(self) -> None:
        uow = self.new_uow()
        assert isinstance(self._write(uow, an_order(uuid.uuid4(), "SO-7")), OutboxEvent)
        assert isinstance(self._write(uow, an_order(uuid.uuid4(), "SO-7")), OutboxEvent)
        assert len(self._events(uow)) == 2

    def test_an_id_of_another_organisation_is_refused(self) -> None:
        uow = self.new_uow()
        theirs = an_order(uuid.uuid4())
        self._add_draft(uow, theirs)
        ours = replace(theirs, org_id=uuid.uuid4())
        refused = self._write(uow, ours)
        assert isinstance(refused, ApprovalRefused) and refused.reason == "id_taken"
        stored = self._stored(uow, theirs)
        assert stored is not None and stored.status is DraftOrderStatus.DRAFT
        assert self._events(uow) == []

    def test_nothing_is_kept_without_a_commit(self) -> None:
        uow = self.new_uow()
        order = an_order(uuid.uuid4())
        approved = replace(order, status=DraftOrderStatus.APPROVED)
        with uow:
            uow.approvals.write(approved, build_push_requested(approved, occurred_at=NOW), now=NOW)
        assert self._stored(uow, order) is None
        assert self._events(uow) == []
