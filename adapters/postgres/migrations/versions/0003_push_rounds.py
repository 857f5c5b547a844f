"""erp_push_log.push_round and previous_idempotency_key: pushing a FAILED order again.

A push again starts a new attempt sequence (round r + 1) under keys of its own;
``push_round`` says which round a row belongs to (0 for every row written
before this revision) and ``previous_idempotency_key`` links attempt 0 of a
round >= 1 to the final key of the FAILED round before it.

Revision ID: 0003_push_rounds
Revises: 0002_outbox_event_value
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_push_rounds"
down_revision: str | None = "0002_outbox_event_value"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL (11+) records it in the catalogue, no table rewrite.
    op.add_column(
        "erp_push_log",
        sa.Column("push_round", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column("erp_push_log", sa.Column("previous_idempotency_key", sa.Text(), nullable=True))
    op.create_check_constraint("ck_erp_push_log_push_round", "erp_push_log", "push_round >= 0")


def downgrade() -> None:
    op.drop_constraint("ck_erp_push_log_push_round", "erp_push_log", type_="check")
    op.drop_column("erp_push_log", "previous_idempotency_key")
    op.drop_column("erp_push_log", "push_round")
