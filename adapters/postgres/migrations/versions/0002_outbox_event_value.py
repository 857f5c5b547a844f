"""outbox_event.value: the Kafka value, encoded when the event is written.

With the value encoded in the writer's transaction, the relay only moves bytes
(no JSON parsing or Avro encoding on its hot path), and a payload that does not
fit its schema is refused to the writer instead of stalling the relay later.
NULL (rows written before this revision, or by a writer without an encoder):
the relay encodes ``payload`` itself, as before.

Revision ID: 0002_outbox_event_value
Revises: 0001_initial_schema
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_outbox_event_value"
down_revision: str | None = "0001_initial_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable without a default: a catalogue-only change, instant on a big table.
    op.add_column("outbox_event", sa.Column("value", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox_event", "value")
