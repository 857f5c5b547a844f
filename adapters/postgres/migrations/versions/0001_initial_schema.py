"""Initial schema: erp_connection, erp_push_log, draft_order, outbox_event.

Revision ID: 0001_initial_schema
Revises:
Create Date: 2025-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial_schema"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMPTZ = sa.DateTime(timezone=True)


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", _TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", _TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "erp_connection",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("connector_type", sa.Text(), nullable=False),
        sa.Column("config_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'ACTIVE'"), nullable=False),
        sa.Column("last_test_at", _TIMESTAMPTZ, nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="erp_connection_pkey"),
        sa.CheckConstraint("status IN ('ACTIVE', 'DISABLED')", name="ck_erp_connection_status"),
    )
    # One ACTIVE connection per organisation (see adapters/postgres/models.py).
    op.create_index(
        "idx_erp_connection_active_org",
        "erp_connection",
        ["org_id"],
        unique=True,
        postgresql_where=sa.text("status = 'ACTIVE'"),
    )
    op.create_index("idx_erp_connection_org", "erp_connection", ["org_id"])

    op.create_table(
        "erp_push_log",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("draft_order_id", sa.Uuid(), nullable=False),
        sa.Column("connector_type", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("request_json", postgresql.JSONB(), nullable=True),
        sa.Column("response_json", postgresql.JSONB(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("retry_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        *_timestamps(),
        sa.Column("lease_expires_at", _TIMESTAMPTZ, nullable=True),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="erp_push_log_pkey"),
        sa.CheckConstraint(
            "status IN ('SUCCESS', 'FAILED', 'PENDING', 'RETRYING')",
            name="ck_erp_push_log_status",
        ),
        sa.CheckConstraint("retry_count >= 0", name="ck_erp_push_log_retry_count"),
        sa.CheckConstraint("attempt >= 0", name="ck_erp_push_log_attempt"),
    )
    op.create_index(
        "idx_erp_push_log_idempotency", "erp_push_log", ["idempotency_key"], unique=True
    )
    op.create_index("idx_erp_push_log_org_order", "erp_push_log", ["org_id", "draft_order_id"])
    op.create_index(
        "idx_erp_push_log_pending_lease",
        "erp_push_log",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'PENDING'"),
    )

    op.create_table(
        "draft_order",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("order_number", sa.Text(), nullable=False),
        sa.Column("customer_code", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), server_default=sa.text("'EUR'"), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'DRAFT'"), nullable=False),
        sa.Column(
            "lines", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("notes", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column(
            "extra", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        *_timestamps(),
        sa.Column("approved_at", _TIMESTAMPTZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="draft_order_pkey"),
        sa.CheckConstraint("status IN ('DRAFT', 'APPROVED')", name="ck_draft_order_status"),
        sa.CheckConstraint(
            "(status = 'APPROVED') = (approved_at IS NOT NULL)",
            name="ck_draft_order_approved_at",
        ),
        sa.UniqueConstraint("org_id", "order_number", name="uq_draft_order_org_order_number"),
    )

    op.create_table(
        "outbox_event",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),  # BIGSERIAL
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("aggregate_type", sa.Text(), nullable=False),
        sa.Column("aggregate_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", _TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
        sa.Column("published_at", _TIMESTAMPTZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="outbox_event_pkey"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_event_id"),
    )
    op.create_index(
        "idx_outbox_event_unpublished",
        "outbox_event",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    # Wake the relay when events are committed: NOTIFY is delivered at commit
    # and coalesced per transaction, so a statement-level trigger costs one
    # notification per inserting transaction at most.
    op.execute(
        """
        CREATE FUNCTION outbox_event_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('outbox_event', '');
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER trg_outbox_event_notify
        AFTER INSERT ON outbox_event
        FOR EACH STATEMENT EXECUTE FUNCTION outbox_event_notify()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS trg_outbox_event_notify ON outbox_event")
    op.execute("DROP FUNCTION IF EXISTS outbox_event_notify()")
    op.drop_index("idx_outbox_event_unpublished", table_name="outbox_event")
    op.drop_table("outbox_event")
    op.drop_table("draft_order")
    op.drop_index("idx_erp_push_log_pending_lease", table_name="erp_push_log")
    op.drop_index("idx_erp_push_log_org_order", table_name="erp_push_log")
    op.drop_index("idx_erp_push_log_idempotency", table_name="erp_push_log")
    op.drop_table("erp_push_log")
    op.drop_index("idx_erp_connection_org", table_name="erp_connection")
    op.drop_index("idx_erp_connection_active_org", table_name="erp_connection")
    op.drop_table("erp_connection")
