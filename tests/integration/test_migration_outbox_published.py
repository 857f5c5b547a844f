"""Migration 0004 on a real PostgreSQL with rows in flight: nothing waiting is lost or re-sent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine, inspect, text

from adapters.postgres import migrate
from adapters.postgres.admin import temporary_database
from adapters.postgres.outbox_relay import PgOutboxRelayStore

pytestmark = pytest.mark.integration

BEFORE = "0003_push_rounds"
PUBLISHED_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

_INSERT = text(
    "INSERT INTO outbox_event (event_id, aggregate_type, aggregate_id, org_id, event_type,"
    " payload, headers, published_at, value)"
    " VALUES (:event_id, 'DraftOrder', :order, :org, 'PushRequested', '{}'::jsonb,"
    " '{}'::jsonb, :published_at, :value) RETURNING id"
)


@pytest.fixture
def at_0003(database_url: str) -> Iterator[tuple[str, Engine]]:
    """A database at revision 0003 (the relay still marked rows with ``published_at``)."""
    with temporary_database(database_url, prefix="orderflow_t_m0004") as url:
        migrate.upgrade(url, BEFORE)
        engine = create_engine(url)
        try:
            yield url, engine
        finally:
            engine.dispose()


def _fill(engine: Engine) -> tuple[dict[int, uuid.UUID], dict[int, bytes]]:
    """Three published rows and three waiting ones; ``(published ids, waiting values)``."""
    published: dict[int, uuid.UUID] = {}
    waiting: dict[int, bytes] = {}
    org = uuid.uuid4()
    with engine.begin() as conn:
        for n in range(6):
            event_id = uuid.uuid4()
            sent = n % 2 == 0
            value = f"value-{n}".encode()
            row_id = conn.execute(
                _INSERT,
                {
                    "event_id": event_id,
                    "order": uuid.uuid4(),
                    "org": org,
                    "published_at": PUBLISHED_AT + timedelta(minutes=n) if sent else None,
                    "value": value,
                },
            ).scalar_one()
            if sent:
                published[row_id] = event_id
            else:
                waiting[row_id] = value
    return published, waiting


def test_upgrade_moves_published_rows_and_leaves_waiting_ones_to_the_relay(
    at_0003: tuple[str, Engine],
) -> None:
    url, engine = at_0003
    published, waiting = _fill(engine)

    migrate.upgrade(url, "0004_outbox_published")

    with engine.connect() as conn:
        left = {
            row.id: bytes(row.value)
            for row in conn.execute(text("SELECT id, value FROM outbox_event"))
        }
        recorded = {
            row_id: (event_id, at)
            for row_id, event_id, at in conn.execute(
                text("SELECT id, event_id, published_at FROM outbox_published")
            )
        }
    assert left == waiting
    assert {row_id: event_id for row_id, (event_id, _) in recorded.items()} == published
    # Each keeps the time it was first published at.
    assert sorted(at for _, at in recorded.values()) == [
        PUBLISHED_AT + timedelta(minutes=n) for n in (0, 2, 4)
    ]
    assert "published_at" not in {c["name"] for c in inspect(engine).get_columns("outbox_event")}

    # The new relay claims exactly the rows that were in flight, then records them.
    store = PgOutboxRelayStore(url, lock_key=uuid.uuid4().int % 2**62)
    try:
        assert store.try_acquire_leadership()
        claimed = store.claim(0, 100)
        assert [row[0] for row in claimed] == sorted(waiting)
        assert store.mark_published([row[0] for row in claimed]) == len(waiting)
        assert store.claim(0, 100) == []
        # A re-send of an already recorded event changes nothing.
        assert store.mark_published(sorted(waiting)) == 0
    finally:
        store.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox_published")).scalar_one() == 6


def test_downgrade_keeps_waiting_rows_unpublished(at_0003: tuple[str, Engine]) -> None:
    url, engine = at_0003
    _, waiting = _fill(engine)
    migrate.upgrade(url, "head")

    migrate.downgrade(url, BEFORE)

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, published_at FROM outbox_event")).all()
    assert {row_id for row_id, _ in rows} == set(waiting)
    assert all(at is None for _, at in rows)
    assert "outbox_published" not in inspect(engine).get_table_names()
