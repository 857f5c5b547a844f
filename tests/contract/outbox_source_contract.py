"""The contract of ``domain.outbox_ports.OutboxSource``, for every implementation.

A subclass gives :meth:`make_source` (a source over an outbox holding only what
the test writes), :meth:`write` (commits events, returns their ids in write
order) and :meth:`acknowledge` (what a sink's broker would have acknowledged:
the fake refuses to mark anything else). The fake (tests/unit) and the
PostgreSQL source (tests/integration) both run it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from domain.outbox_ports import OutboxSource
from domain.records import OutboxEvent
from domain.repositories import RepositoryError


def an_event(seq: int, aggregate: uuid.UUID | None = None) -> OutboxEvent:
    """A ``PushResult``-typed event (the relay moves any type; this one has a schema)."""
    return OutboxEvent(
        event_id=uuid.uuid4(),
        aggregate_type="DraftOrder",
        aggregate_id=aggregate or uuid.uuid4(),
        org_id=uuid.uuid4(),
        event_type="PushRequested",
        payload={"seq": seq},
        headers={"event_id": str(uuid.uuid4()), "attempt": "0"},
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


class OutboxSourceContract:
    """Tests every ``OutboxSource`` must pass."""

    def make_source(self) -> OutboxSource:
        """A source over an outbox holding only what the test writes."""
        raise NotImplementedError

    def write(self, source: OutboxSource, events: Sequence[OutboxEvent]) -> list[int]:
        """Commit ``events`` to the outbox; their sequence ids, in order."""
        raise NotImplementedError

    def acknowledge(self, source: OutboxSource, ids: Sequence[int]) -> None:
        """Record that a broker acknowledged ``ids`` (for sources that check it)."""

    def test_a_source_without_the_leader_lock_claims_nothing(self) -> None:
        source = self.make_source()
        try:
            self.write(source, [an_event(1)])
            with pytest.raises(RepositoryError):
                source.claim(0, 10)
        finally:
            source.close()

    def test_the_leader_claims_unpublished_rows_past_the_cursor_in_id_order(self) -> None:
        source = self.make_source()
        try:
            ids = self.write(source, [an_event(n) for n in range(5)])
            assert ids == sorted(ids)
            assert source.try_acquire_leadership()
            assert source.try_acquire_leadership()  # holding it already is fine
            rows = source.claim(0, 3)
            assert [row[0] for row in rows] == ids[:3]
            assert [row[0] for row in source.claim(ids[2], 10)] == ids[3:]
            assert source.claim(ids[-1], 10) == []
            _token, event_type, key, _, headers, _ = rows[0]
            assert event_type == "PushRequested" and uuid.UUID(key)
            assert headers["attempt"] == "0"
        finally:
            source.close()

    def test_marked_rows_are_not_claimed_again(self) -> None:
        source = self.make_source()
        try:
            ids = self.write(source, [an_event(n) for n in range(4)])
            assert source.try_acquire_leadership()
            self.acknowledge(source, ids[:2])
            assert source.mark_published(ids[:2]) == 2
            assert source.mark_published([]) == 0
            assert [row[0] for row in source.claim(0, 10)] == ids[2:]
            assert source.mark_published(ids[:1]) == 0  # already published
        finally:
            source.close()

    def test_released_leadership_can_be_taken_again(self) -> None:
        source = self.make_source()
        try:
            self.write(source, [an_event(1)])
            assert source.try_acquire_leadership()
            source.release_leadership()
            with pytest.raises(RepositoryError):
                source.claim(0, 10)
            assert source.try_acquire_leadership()
            assert len(source.claim(0, 10)) == 1
        finally:
            source.close()
