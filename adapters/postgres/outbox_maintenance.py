"""Operating the outbox: how far behind the relay is, and removing published rows.

The relay marks rows published rather than deleting them (a re-send can then
tell a duplicate, and operators can see what went out when). Without pruning
the table only grows, so operators run ``orderflow outbox prune`` regularly
(e.g. daily from cron): it deletes rows published longer ago than a retention,
in short batches so the relay's claims never wait long behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, text

#: Rows deleted per statement (and transaction) by :func:`prune_published`.
PRUNE_BATCH = 5_000


@dataclass(frozen=True)
class OutboxStatus:
    """Counts of the outbox table (published rows are kept until pruned)."""

    unpublished: int
    published: int
    #: ``created_at`` of the oldest row still waiting for the relay (None: none waits).
    oldest_unpublished_at: datetime | None


def outbox_status(engine: Engine) -> OutboxStatus:
    """Return the outbox's backlog and the number of published rows kept."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE published_at IS NULL),"
                " count(*) FILTER (WHERE published_at IS NOT NULL),"
                " min(created_at) FILTER (WHERE published_at IS NULL)"
                " FROM outbox_event"
            )
        ).one()
    return OutboxStatus(int(row[0]), int(row[1]), row[2])


def count_prunable(engine: Engine, older_than: timedelta) -> int:
    """How many rows :func:`prune_published` would delete now (for a dry run)."""
    with engine.connect() as conn:
        value = conn.execute(
            text(
                "SELECT count(*) FROM outbox_event"
                " WHERE published_at < now() - make_interval(secs => :secs)"
            ),
            {"secs": older_than.total_seconds()},
        ).scalar_one()
    return int(value)


def prune_published(engine: Engine, older_than: timedelta, batch_size: int = PRUNE_BATCH) -> int:
    """Delete rows published more than ``older_than`` ago; return how many were deleted.

    Unpublished rows are never touched, whatever their age. Each batch is its
    own short transaction.
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
                    "DELETE FROM outbox_event WHERE id IN ("
                    " SELECT id FROM outbox_event"
                    " WHERE published_at < now() - make_interval(secs => :secs)"
                    " ORDER BY id LIMIT :limit)"
                ),
                {"secs": older_than.total_seconds(), "limit": batch_size},
            ).rowcount
        deleted += count
        if count < batch_size:
            return deleted
