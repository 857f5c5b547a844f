"""Operating the outbox: how far behind the relay is, and removing the record of what went out.

``outbox_event`` holds only events waiting for the relay; once the broker has
one, the relay deletes it and records it (id, event id, type, key, created
and published times, no payload) in ``outbox_published``, so operators can
see what went out when. Without pruning that record only grows, so operators
run ``orderflow outbox prune`` regularly (e.g. daily from cron): it deletes
records of events published longer ago than a retention, in short batches so
the relay's inserts never wait long behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, text

#: Rows deleted per statement (and transaction) by :func:`prune_published`.
PRUNE_BATCH = 5_000


@dataclass(frozen=True)
class OutboxStatus:
    """Counts of the outbox (records of published events are kept until pruned)."""

    unpublished: int
    published: int
    #: ``created_at`` of the oldest row still waiting for the relay (None: none waits).
    oldest_unpublished_at: datetime | None


def outbox_status(engine: Engine) -> OutboxStatus:
    """Return the outbox's backlog and the number of published events recorded."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM outbox_event),"
                " (SELECT count(*) FROM outbox_published),"
                " (SELECT min(created_at) FROM outbox_event)"
            )
        ).one()
    return OutboxStatus(int(row[0]), int(row[1]), row[2])


def count_prunable(engine: Engine, older_than: timedelta) -> int:
    """How many rows :func:`prune_published` would delete now (for a dry run)."""
    with engine.connect() as conn:
        value = conn.execute(
            text(
                "SELECT count(*) FROM outbox_published"
                " WHERE published_at < now() - make_interval(secs => :secs)"
            ),
            {"secs": older_than.total_seconds()},
        ).scalar_one()
    return int(value)


def prune_published(engine: Engine, older_than: timedelta, batch_size: int = PRUNE_BATCH) -> int:
    """Delete records of events published more than ``older_than`` ago; return how many.

    Unpublished events (``outbox_event``) are never touched, whatever their age.
    Each batch is its own short transaction.
    """
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    deleted = 0
    while True:
        with engine.begin() as conn:
            count = conn.execute(
                text(
                    "DELETE FROM outbox_published WHERE id IN ("
                    " SELECT id FROM outbox_published"
                    " WHERE published_at < now() - make_interval(secs => :secs)"
                    " ORDER BY id LIMIT :limit)"
                ),
                {"secs": older_than.total_seconds(), "limit": batch_size},
            ).rowcount
        deleted += count
        if count < batch_size:
            return deleted
