"""``SqlPushLogStore``: the ``erp_push_log`` table in Core statements.

Claiming and recording outcomes are single atomic statements (``INSERT ... ON
CONFLICT DO NOTHING RETURNING``, conditional ``UPDATE ... RETURNING``), safe
between workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from adapters.postgres.models import (
    ERPPushLog,
)
from domain.model import PushStatus
from domain.records import (
    PushLogEntry,
)


def _timestamps(created_at: datetime | None, updated_at: datetime | None) -> dict[str, datetime]:
    """Explicit timestamps, or none so that the server default ``now()`` applies."""
    values: dict[str, datetime] = {}
    if created_at is not None:
        values["created_at"] = created_at
    if updated_at is not None:
        values["updated_at"] = updated_at
    return values


# -- draft_order --------------------------------------------------------------


# -- erp_push_log -------------------------------------------------------------

_PUSH_LOG: Table = ERPPushLog.__table__  # type: ignore[assignment]


def _push_log_entry(row: RowMapping) -> PushLogEntry:
    return PushLogEntry(
        id=row["id"],
        org_id=row["org_id"],
        draft_order_id=row["draft_order_id"],
        idempotency_key=row["idempotency_key"],
        status=PushStatus(row["status"]),
        connector_type=row["connector_type"],
        request_json=row["request_json"],
        response_json=row["response_json"],
        error_message=row["error_message"],
        retry_count=row["retry_count"],
        attempt=row["attempt"],
        latency_ms=row["latency_ms"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        lease_expires_at=row["lease_expires_at"],
        push_round=row["push_round"],
        previous_idempotency_key=row["previous_idempotency_key"],
    )


class SqlPushLogStore:
    """``PushLogStore`` over the ``erp_push_log`` table."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def _one(self, *conditions: ColumnElement[bool]) -> PushLogEntry | None:
        row = self._session.execute(select(_PUSH_LOG).where(*conditions)).mappings().first()
        return None if row is None else _push_log_entry(row)

    def get(self, entry_id: uuid.UUID) -> PushLogEntry | None:
        """Return the row with this id, if any."""
        return self._one(_PUSH_LOG.c.id == entry_id)

    def find(self, idempotency_key: str) -> PushLogEntry | None:
        """Return the row of this idempotency key, if any."""
        return self._one(_PUSH_LOG.c.idempotency_key == idempotency_key)

    def find_success(self, org_id: uuid.UUID, draft_order_id: uuid.UUID) -> PushLogEntry | None:
        """Return the (earliest) SUCCESS row of (org, draft order), if any."""
        row = (
            self._session.execute(
                select(_PUSH_LOG)
                .where(
                    _PUSH_LOG.c.org_id == org_id,
                    _PUSH_LOG.c.draft_order_id == draft_order_id,
                    _PUSH_LOG.c.status == PushStatus.SUCCESS.value,
                )
                .order_by(_PUSH_LOG.c.attempt, _PUSH_LOG.c.created_at)
                .limit(1)
            )
            .mappings()
            .first()
        )
        return None if row is None else _push_log_entry(row)

    def list_for_order(
        self, org_id: uuid.UUID, draft_order_id: uuid.UUID
    ) -> Sequence[PushLogEntry]:
        """Return every attempt of (org, draft order), by push round then attempt."""
        rows = self._session.execute(
            select(_PUSH_LOG)
            .where(_PUSH_LOG.c.org_id == org_id, _PUSH_LOG.c.draft_order_id == draft_order_id)
            .order_by(_PUSH_LOG.c.push_round, _PUSH_LOG.c.attempt, _PUSH_LOG.c.created_at)
        ).mappings()
        return [_push_log_entry(row) for row in rows]

    def claim(self, entry: PushLogEntry) -> PushLogEntry | None:
        """Insert ``entry`` unless its idempotency key exists; ``None`` if it does.

        ``ON CONFLICT DO NOTHING`` waits for a concurrent inserter of the same
        key to finish, so exactly one of two racing transactions gets the row.
        """
        stmt = (
            pg_insert(_PUSH_LOG)
            .values(
                id=entry.id,
                org_id=entry.org_id,
                draft_order_id=entry.draft_order_id,
                connector_type=entry.connector_type,
                status=entry.status.value,
                request_json=entry.request_json,
                response_json=entry.response_json,
                error_message=entry.error_message,
                idempotency_key=entry.idempotency_key,
                retry_count=entry.retry_count,
                latency_ms=entry.latency_ms,
                attempt=entry.attempt,
                lease_expires_at=entry.lease_expires_at,
                push_round=entry.push_round,
                previous_idempotency_key=entry.previous_idempotency_key,
                **_timestamps(entry.created_at, entry.updated_at),
            )
            .on_conflict_do_nothing(index_elements=[_PUSH_LOG.c.idempotency_key])
            .returning(*_PUSH_LOG.c)
        )
        row = self._session.execute(stmt).mappings().first()
        return None if row is None else _push_log_entry(row)

    def take_over(
        self,
        idempotency_key: str,
        *,
        now: datetime,
        lease_expires_at: datetime,
        connector_type: str | None = None,
    ) -> PushLogEntry | None:
        """Renew the lease of a PENDING row whose lease expired; ``None`` if not.

        ``connector_type`` (if given) is recorded: a requested push again has
        none until a worker resolves the connection as it takes the row.
        """
        values: dict[str, Any] = {"lease_expires_at": lease_expires_at, "updated_at": now}
        if connector_type is not None:
            values["connector_type"] = connector_type
        # The WHERE clause is re-checked after a concurrent updater commits
        # (READ COMMITTED), so two workers cannot both take the same claim.
        stmt = (
            update(_PUSH_LOG)
            .where(
                _PUSH_LOG.c.idempotency_key == idempotency_key,
                _PUSH_LOG.c.status == PushStatus.PENDING.value,
                (_PUSH_LOG.c.lease_expires_at.is_(None)) | (_PUSH_LOG.c.lease_expires_at <= now),
            )
            .values(**values)
            .returning(*_PUSH_LOG.c)
        )
        row = self._session.execute(stmt).mappings().first()
        return None if row is None else _push_log_entry(row)

    def update_outcome(
        self,
        entry_id: uuid.UUID,
        *,
        status: PushStatus,
        now: datetime,
        response_json: dict[str, Any] | None = None,
        error_message: str | None = None,
        latency_ms: int | None = None,
    ) -> PushLogEntry | None:
        """Record the outcome of a PENDING attempt; ``None`` if it is not PENDING."""
        stmt = (
            update(_PUSH_LOG)
            .where(
                _PUSH_LOG.c.id == entry_id,
                _PUSH_LOG.c.status == PushStatus.PENDING.value,
            )
            .values(
                status=status.value,
                response_json=response_json,
                error_message=error_message,
                latency_ms=latency_ms,
                lease_expires_at=None,
                updated_at=now,
            )
            .returning(*_PUSH_LOG.c)
        )
        row = self._session.execute(stmt).mappings().first()
        return None if row is None else _push_log_entry(row)
