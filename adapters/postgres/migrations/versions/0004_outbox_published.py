"""outbox_published: the relay deletes what it sent instead of rewriting the row to mark it.

Up to 0003 the relay marked a sent event with ``UPDATE outbox_event SET
published_at = now()``: PostgreSQL wrote a new ~1.9 KB version of the row and,
``published_at`` being in the predicate of ``idx_outbox_event_unpublished``,
new index entries as well (never a HOT update). Measured with
``python -m bench.outbox_marking`` (100k rows, batches of 2,000, the
database side alone): 34,500 rows/s and 2,213 bytes of WAL per row; deleting
the row and inserting a narrow archive row in the same statement: 53,700
rows/s and 251 bytes of WAL per row, and the table no longer doubles.

From this revision ``outbox_event`` holds only events waiting for the relay
(claimed in ``id`` order through its primary key), and ``outbox_published``
records what was sent and when (no payload: the topic has it), pruned by
``orderflow outbox prune``.

Upgrading with rows in flight: unpublished rows stay where they are and the
new relay sends them; published rows move to ``outbox_published`` with their
``published_at``. The upgrade locks ``outbox_event`` for its duration (writers
wait), so prune first on a big table; stop the relays of the old version
before it (one that was mid-batch re-sends that batch, which consumers
already take as duplicates by the idempotency key).

Downgrading puts ``published_at`` and its index back; the published rows'
payloads are gone, so their history stays only in the topics.

Revision ID: 0004_outbox_published
Revises: 0003_push_rounds
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_outbox_published"
down_revision: str | None = "0003_push_rounds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMPTZ = postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    # Writers wait while the published rows move, so none can slip between the copy
    # and the delete; the relay's claims wait too.
    op.execute("LOCK TABLE outbox_event IN EXCLUSIVE MODE")
    op.create_table(
        "outbox_published",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("aggregate_type", sa.Text(), nullable=False),
        sa.Column("aggregate_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("created_at", _TIMESTAMPTZ, nullable=False),
        sa.Column("published_at", _TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="outbox_published_pkey"),
    )
    op.execute(
        "WITH sent AS (DELETE FROM outbox_event WHERE published_at IS NOT NULL"
        " RETURNING id, event_id, aggregate_type, aggregate_id, org_id, event_type,"
        " created_at, published_at)"
        " INSERT INTO outbox_published SELECT * FROM sent"
    )
    op.drop_index("idx_outbox_event_unpublished", table_name="outbox_event")
    op.drop_column("outbox_event", "published_at")


def downgrade() -> None:
    op.add_column("outbox_event", sa.Column("published_at", _TIMESTAMPTZ, nullable=True))
    op.create_index(
        "idx_outbox_event_unpublished",
        "outbox_event",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox_published")
