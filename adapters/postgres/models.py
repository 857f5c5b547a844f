"""SQLAlchemy 2 ORM models of the pipeline's tables.

``erp_connection`` and ``erp_push_log`` follow the seed's schema (names,
columns, statuses, the ``idx_erp_push_log_idempotency`` unique index);
``erp_push_log`` adds ``updated_at``, ``lease_expires_at`` and ``attempt`` for
the claim-before-call protocol, and ``push_round`` / ``previous_idempotency_key``
for pushing a FAILED order again. ``draft_order`` and ``outbox_event`` carry
the transactional outbox.

The Alembic migrations in ``adapters/postgres/migrations`` create exactly
this schema; an integration test compares the two so they cannot drift.

One active connection per organisation: the seed writes
``UNIQUE(org_id, connector_type) WHERE status='ACTIVE'`` but also says "MVP:
one active connector per org", and the push path resolves *the* active
connection of an organisation. An index on (org_id, connector_type) would
allow two active connections of different types and make that lookup
ambiguous, so the partial unique index is on ``org_id`` alone. Going
multi-connector later means widening this index plus routing logic.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from domain.model import check_connector_type

#: Channel the ``outbox_event`` insert trigger NOTIFYs (payload: empty), so the
#: relay can LISTEN instead of polling tightly. Delivered at commit.
OUTBOX_NOTIFY_CHANNEL = "outbox_event"

#: Name of the unique index on the idempotency key (the seed's error text names it).
IDEMPOTENCY_INDEX = "idx_erp_push_log_idempotency"
#: Name of the partial unique index allowing one ACTIVE connection per organisation.
ACTIVE_CONNECTION_INDEX = "idx_erp_connection_active_org"
#: Name of the unique constraint on (org_id, order_number) of ``draft_order``.
ORDER_NUMBER_CONSTRAINT = "uq_draft_order_org_order_number"
#: Name of ``draft_order``'s primary key (PostgreSQL's default name).
DRAFT_ORDER_PKEY = "draft_order_pkey"


class Base(DeclarativeBase):
    """Declarative base: Python types map to the PostgreSQL types of the seed."""

    metadata = MetaData()
    type_annotation_map = {
        uuid.UUID: Uuid(as_uuid=True),
        datetime: DateTime(timezone=True),
        str: Text(),
        bytes: LargeBinary(),
        dict[str, Any]: JSONB(),
        list[dict[str, Any]]: JSONB(),
    }


#: Returns the connector types connectors are registered for; see
#: :func:`use_registered_connector_types`.
RegisteredTypes = Callable[[], Collection[str]]

_registered_types: RegisteredTypes | None = None


def use_registered_connector_types(provider: RegisteredTypes | None) -> None:
    """Tell ``ERPConnection`` where the registered connector types come from.

    The composition root (``entrypoints.bootstrap``, on import) passes the connector
    registry's ``known_types``: this adapter must not import the connectors adapter,
    and the registry (entry points and ``ConnectorRegistry.register`` at start-up) is
    the one source of truth. It is asked at every check, so a type registered later
    is accepted from then on. ``None`` removes the provider.
    """
    global _registered_types  # one process-wide wiring, set at start-up
    _registered_types = provider


def registered_connector_types() -> Collection[str]:
    """The types new ``erp_connection`` rows may have (``RuntimeError`` if not wired)."""
    if _registered_types is None:
        raise RuntimeError(
            "ERPConnection cannot check connector_type: no connector registry is wired in; "
            "import entrypoints.bootstrap (the composition root) or call "
            "adapters.postgres.models.use_registered_connector_types()"
        )
    return _registered_types()


class ERPConnection(Base):
    """``erp_connection``: an organisation's encrypted connector configuration."""

    __tablename__ = "erp_connection"
    __table_args__ = (
        CheckConstraint("status IN ('ACTIVE', 'DISABLED')", name="ck_erp_connection_status"),
        Index(
            ACTIVE_CONNECTION_INDEX,
            "org_id",
            unique=True,
            postgresql_where=text("status = 'ACTIVE'"),
        ),
        Index("idx_erp_connection_org", "org_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )
    org_id: Mapped[uuid.UUID]
    connector_type: Mapped[str]
    config_encrypted: Mapped[bytes]
    status: Mapped[str] = mapped_column(default="ACTIVE", server_default=text("'ACTIVE'"))
    last_test_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    @validates("connector_type")
    def _validate_connector_type(self, key: str, value: str) -> str:
        """Refuse types no connector is registered for: ``Invalid connector_type: X``.

        Runs when the attribute is set (a new row, or a changed type), not when
        a row is loaded: rows stored before a connector was uninstalled still
        load, and their pushes fail with ``Unknown connector type``.
        """
        return check_connector_type(value, registered_connector_types())


class ERPPushLog(Base):
    """``erp_push_log``: one row per push attempt (seed columns plus lease bookkeeping)."""

    __tablename__ = "erp_push_log"
    __table_args__ = (
        CheckConstraint(
            "status IN ('SUCCESS', 'FAILED', 'PENDING', 'RETRYING')",
            name="ck_erp_push_log_status",
        ),
        CheckConstraint("retry_count >= 0", name="ck_erp_push_log_retry_count"),
        CheckConstraint("attempt >= 0", name="ck_erp_push_log_attempt"),
        CheckConstraint("push_round >= 0", name="ck_erp_push_log_push_round"),
        Index(IDEMPOTENCY_INDEX, "idempotency_key", unique=True),
        Index("idx_erp_push_log_org_order", "org_id", "draft_order_id"),
        # Lets a reaper find PENDING claims whose worker died, cheaply.
        Index(
            "idx_erp_push_log_pending_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'PENDING'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )
    org_id: Mapped[uuid.UUID]
    draft_order_id: Mapped[uuid.UUID]
    # Nullable: a push that fails because the organisation has no active
    # connection has no connector type to record.
    connector_type: Mapped[str | None]
    status: Mapped[str]
    request_json: Mapped[dict[str, Any] | None]
    response_json: Mapped[dict[str, Any] | None]
    error_message: Mapped[str | None]
    idempotency_key: Mapped[str]
    retry_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    lease_expires_at: Mapped[datetime | None]
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    #: The push round of the attempt (0: the first push; r >= 1: the r-th push again).
    push_round: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    #: On attempt 0 of a round >= 1: the final (FAILED) key of the round before it.
    previous_idempotency_key: Mapped[str | None]


class DraftOrderRow(Base):
    """``draft_order``: the orders the producer approves (lines as JSONB)."""

    __tablename__ = "draft_order"
    __table_args__ = (
        CheckConstraint("status IN ('DRAFT', 'APPROVED')", name="ck_draft_order_status"),
        # An approved order always says when; a draft never does.
        CheckConstraint(
            "(status = 'APPROVED') = (approved_at IS NOT NULL)",
            name="ck_draft_order_approved_at",
        ),
        UniqueConstraint("org_id", "order_number", name=ORDER_NUMBER_CONSTRAINT),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    org_id: Mapped[uuid.UUID]
    order_number: Mapped[str]
    customer_code: Mapped[str]
    currency: Mapped[str] = mapped_column(server_default=text("'EUR'"))
    status: Mapped[str] = mapped_column(server_default=text("'DRAFT'"))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(server_default=text("'[]'::jsonb"))
    notes: Mapped[str] = mapped_column(server_default=text("''"))
    # DraftOrder.extra (free-form JSON metadata) is kept so that reading an
    # order back gives the entity that was approved, not a lossy copy.
    extra: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    approved_at: Mapped[datetime | None]


class OutboxEventRow(Base):
    """``outbox_event``: events waiting for the relay; ``id`` gives the publish order.

    Every row here is unpublished: the relay deletes a row once the broker has
    it and records it in ``outbox_published`` (revision 0004).
    """

    __tablename__ = "outbox_event"
    __table_args__ = (UniqueConstraint("event_id", name="uq_outbox_event_event_id"),)

    # BIGSERIAL: the sequence gives the publish order.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID]
    aggregate_type: Mapped[str]
    aggregate_id: Mapped[uuid.UUID]
    org_id: Mapped[uuid.UUID]
    event_type: Mapped[str]
    payload: Mapped[dict[str, Any]]
    headers: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    #: The Kafka value, encoded in the writer's transaction (NULL: the relay encodes
    #: ``payload``). Keeps JSON parsing and Avro encoding off the relay's hot path.
    value: Mapped[bytes | None]


class OutboxPublishedRow(Base):
    """``outbox_published``: what the relay sent, and when (no payload: the topic has it).

    A narrow row (~120 bytes) written in the statement that deletes the sent
    ``outbox_event`` row, instead of rewriting that ~1.9 KB row to mark it;
    ``orderflow outbox prune`` deletes rows older than a retention.
    """

    __tablename__ = "outbox_published"

    #: The ``outbox_event.id`` the event had (its publish order).
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[uuid.UUID]
    aggregate_type: Mapped[str]
    aggregate_id: Mapped[uuid.UUID]
    org_id: Mapped[uuid.UUID]
    event_type: Mapped[str]
    created_at: Mapped[datetime]
    published_at: Mapped[datetime] = mapped_column(server_default=func.now())
