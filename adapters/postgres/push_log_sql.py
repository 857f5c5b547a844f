"""The push worker's hot-path writes as single batched statements (raw psycopg2).

:class:`PushLogBatchWriter` writes many :class:`~domain.push_writes.ClaimRequest`
(or :class:`~domain.push_writes.OutcomeWrite`) in ONE statement on a connection
of its own in autocommit mode: one statement is one transaction, one round
trip, whatever the batch size. Statements are plain SQL over ``unnest`` of
arrays (no ORM, nothing built per call), so a batch of 50 costs about what one
ORM statement cost.

* :meth:`PushLogBatchWriter.claim_many` - for each request, read the
  organisation's ACTIVE connection and insert the PENDING row, unless the key
  exists (``ON CONFLICT DO NOTHING``, which waits for a concurrent inserter:
  exactly one of two racing claims wins) or the order has history that the
  full logic must look at (attempt 0: any row; later attempts: a SUCCESS row
  or a row of a later push round). The row carries its ``push_round`` and
  ``previous_idempotency_key``.
  Rows are inserted in idempotency-key order, so two batches that share keys
  lock them in the same order and cannot deadlock.
* :meth:`PushLogBatchWriter.record_many` - update each PENDING row to its
  outcome and insert the outbox events of exactly the rows that were PENDING,
  in the order given (their BIGSERIAL ids give the publish order), in the
  same statement: an outcome and its events commit together or not at all.

The same statements run on the writer's own connection (the push worker) or
in a caller's SQLAlchemy session (``PushOrchestrator(db_session)``): one write
path, whoever pushes.

A connection error closes the connection (the next batch reconnects) and
propagates, so every record of the failed batch is retried by its worker.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from sqlalchemy.orm import Session

from adapters.postgres.outbox_relay import session_dsn
from adapters.postgres.outbox_store import OutboxValueEncoder
from domain.model import ConnectionStatus
from domain.push_writes import ClaimGrant, ClaimRequest, OutcomeWrite
from domain.records import ConnectionRecord

_CLAIM_SQL = """
WITH req AS (
    SELECT * FROM unnest(
        %(id)s::uuid[], %(org_id)s::uuid[], %(draft_order_id)s::uuid[], %(key)s::text[],
        %(attempt)s::int[], %(request_json)s::jsonb[], %(now)s::timestamptz[],
        %(lease)s::timestamptz[], %(push_round)s::int[], %(previous_key)s::text[],
        %(fresh_only)s::bool[]
    ) AS r(id, org_id, draft_order_id, idempotency_key, attempt, request_json, now, lease,
           push_round, previous_key, fresh_only)
),
conn AS (
    SELECT c.id, c.org_id, c.connector_type, c.config_encrypted, c.status,
           c.last_test_at, c.created_at, c.updated_at
    FROM erp_connection c
    WHERE c.status = 'ACTIVE' AND c.org_id IN (SELECT org_id FROM req)
),
ins AS (
    INSERT INTO erp_push_log (
        id, org_id, draft_order_id, connector_type, status, request_json,
        idempotency_key, retry_count, attempt, created_at, updated_at, lease_expires_at,
        push_round, previous_idempotency_key
    )
    SELECT r.id, r.org_id, r.draft_order_id, c.connector_type, 'PENDING', r.request_json,
           r.idempotency_key, r.attempt, r.attempt, r.now, r.now, r.lease,
           r.push_round, r.previous_key
    FROM req r LEFT JOIN conn c ON c.org_id = r.org_id
    WHERE NOT r.fresh_only OR NOT EXISTS (
        SELECT 1 FROM erp_push_log h
        WHERE h.org_id = r.org_id AND h.draft_order_id = r.draft_order_id
          AND (r.attempt = 0 OR h.status = 'SUCCESS' OR h.push_round > r.push_round)
    )
    ORDER BY r.idempotency_key
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, org_id
)
SELECT ins.id, c.id, c.org_id, c.connector_type, c.config_encrypted, c.status,
       c.last_test_at, c.created_at, c.updated_at
FROM ins LEFT JOIN conn c ON c.org_id = ins.org_id
"""

_RECORD_SQL = """
WITH v AS (
    SELECT * FROM unnest(
        %(id)s::uuid[], %(status)s::text[], %(response_json)s::jsonb[],
        %(error_message)s::text[], %(latency_ms)s::int[], %(now)s::timestamptz[]
    ) AS v(id, status, response_json, error_message, latency_ms, now)
),
upd AS (
    UPDATE erp_push_log p
    SET status = v.status, response_json = v.response_json, error_message = v.error_message,
        latency_ms = v.latency_ms, lease_expires_at = NULL, updated_at = v.now
    FROM v
    WHERE p.id = v.id AND p.status = 'PENDING'
    RETURNING p.id
),
ev AS (
    SELECT * FROM unnest(
        %(e_owner)s::uuid[], %(e_ord)s::int[], %(e_event_id)s::uuid[],
        %(e_aggregate_type)s::text[], %(e_aggregate_id)s::uuid[], %(e_org_id)s::uuid[],
        %(e_event_type)s::text[], %(e_payload)s::jsonb[], %(e_headers)s::jsonb[],
        %(e_created_at)s::timestamptz[], %(e_value)s::bytea[]
    ) AS e(owner, ord, event_id, aggregate_type, aggregate_id, org_id, event_type,
           payload, headers, created_at, value)
),
ins AS (
    INSERT INTO outbox_event (
        event_id, aggregate_type, aggregate_id, org_id, event_type, payload, headers,
        created_at, value
    )
    SELECT e.event_id, e.aggregate_type, e.aggregate_id, e.org_id, e.event_type, e.payload,
           e.headers, e.created_at, e.value
    FROM ev e
    WHERE e.owner IN (SELECT id FROM upd)
    ORDER BY e.ord
    RETURNING 1
)
SELECT id FROM upd
"""


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _iso(value: datetime | None) -> str | None:
    """A timestamp as ISO-8601 text for a ``::timestamptz[]`` parameter.

    The same value PostgreSQL gets from psycopg2's datetime adapter (an aware
    datetime keeps its offset), at a third of the cost: adapting datetimes was
    40 % of building a batch statement.
    """
    return None if value is None else value.isoformat()


class PushLogBatchWriter:
    """Batched claim and outcome statements (see the module docstring).

    ``PushLogBatchWriter(database_url)`` owns one connection in autocommit mode
    (opened on first use): one statement, one transaction. Meant for one
    thread at a time (a lock keeps stray concurrent use safe).
    :meth:`on_session` runs the same statements in a caller's SQLAlchemy
    session and commits it. ``encoder`` encodes the Kafka value of an outbox
    event written without one (``None``: left to the relay).
    """

    def __init__(self, database_url: str, *, encoder: OutboxValueEncoder | None = None) -> None:
        self._dsn = session_dsn(database_url)
        self._conn: Any = None
        self._session: Session | None = None
        self._encoder = encoder
        self._lock = threading.Lock()

    @classmethod
    def on_session(
        cls, session: Session, *, encoder: OutboxValueEncoder | None = None
    ) -> PushLogBatchWriter:
        """A writer whose statements run in ``session``, each committed with it.

        For ``PushOrchestrator(db_session)``: the caller's session is the one
        connection, so the push log is written where the caller reads it.
        """
        writer = cls.__new__(cls)
        writer._dsn = {}
        writer._conn = None
        writer._session = session
        writer._encoder = encoder
        writer._lock = threading.Lock()
        return writer

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"  # never the DSN (it may hold a password)

    def _connection(self) -> Any:
        conn = self._conn
        if conn is None or conn.closed:
            conn = psycopg2.connect(**self._dsn)
            # One statement per batch: autocommit makes it its own transaction,
            # without a BEGIN/COMMIT round trip around it.
            conn.autocommit = True
            self._conn = conn
        return conn

    def _execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._session is not None:
                return self._execute_in_session(self._session, sql, params)
            conn = self._connection()
            try:
                with conn.cursor() as cursor:
                    cursor.execute(sql, params)
                    rows: list[tuple[Any, ...]] = cursor.fetchall()
                    return rows
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                # The connection may be dead: drop it, the next batch reconnects.
                self.close()
                raise

    @staticmethod
    def _execute_in_session(
        session: Session, sql: str, params: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        try:
            driver = session.connection().connection.driver_connection
            assert isinstance(driver, psycopg2.extensions.connection), type(driver)
            with driver.cursor() as cursor:
                cursor.execute(sql, params)
                rows: list[tuple[Any, ...]] = cursor.fetchall()
            session.commit()
            return rows
        except BaseException:
            session.rollback()
            raise

    def close(self) -> None:
        """Close the own connection (a later call opens a new one); a session stays open."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg2.Error):  # closing a broken connection
                conn.close()

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[ClaimGrant]:
        """Claim each request's row the quick way if its history allows (one statement)."""
        entries = [r.entry for r in requests]
        rows = self._execute(
            _CLAIM_SQL,
            {
                "id": [str(e.id) for e in entries],
                "org_id": [str(e.org_id) for e in entries],
                "draft_order_id": [str(e.draft_order_id) for e in entries],
                "key": [e.idempotency_key for e in entries],
                "attempt": [e.attempt for e in entries],
                "request_json": [_dumps(e.request_json) for e in entries],
                "now": [_iso(e.created_at) for e in entries],
                "lease": [_iso(e.lease_expires_at) for e in entries],
                "push_round": [e.push_round for e in entries],
                "previous_key": [e.previous_idempotency_key for e in entries],
                "fresh_only": [r.fresh_only for r in requests],
            },
        )
        granted: dict[str, ConnectionRecord | None] = {}
        connections: dict[str, ConnectionRecord] = {}
        for row in rows:
            # Text on the own connection; UUIDs in a SQLAlchemy session (its dialect
            # registers psycopg2's UUID type): str() of either is the same key.
            entry_id, conn_id = str(row[0]), None if row[1] is None else str(row[1])
            if conn_id is None:
                granted[entry_id] = None
                continue
            record = connections.get(conn_id)
            if record is None:
                record = ConnectionRecord(
                    id=uuid.UUID(conn_id),
                    org_id=uuid.UUID(str(row[2])),
                    connector_type=row[3],
                    config_encrypted=bytes(row[4]),
                    status=ConnectionStatus(row[5]),
                    last_test_at=row[6],
                    created_at=row[7],
                    updated_at=row[8],
                )
                connections[conn_id] = record
            granted[entry_id] = record
        not_claimed = ClaimGrant(claimed=False)
        return [
            ClaimGrant(True, granted[key]) if (key := str(e.id)) in granted else not_claimed
            for e in entries
        ]

    def record_many(self, writes: Sequence[OutcomeWrite]) -> list[bool]:
        """Record each outcome if its row is PENDING, with its events (one statement).

        Returns, per write, True if it was recorded (False: the row was no
        longer PENDING; its events were not written).
        """
        encoder = self._encoder
        events = [
            (
                str(w.entry_id),
                e if e.value is not None or encoder is None else replace(e, value=encoder(e)),
            )
            for w in writes
            for e in w.events
        ]
        rows = self._execute(
            _RECORD_SQL,
            {
                "id": [str(w.entry_id) for w in writes],
                "status": [w.status.value for w in writes],
                "response_json": [_dumps(w.response_json) for w in writes],
                "error_message": [w.error_message for w in writes],
                "latency_ms": [w.latency_ms for w in writes],
                "now": [_iso(w.now) for w in writes],
                "e_owner": [owner for owner, _ in events],
                "e_ord": list(range(len(events))),
                "e_event_id": [str(e.event_id) for _, e in events],
                "e_aggregate_type": [e.aggregate_type for _, e in events],
                "e_aggregate_id": [str(e.aggregate_id) for _, e in events],
                "e_org_id": [str(e.org_id) for _, e in events],
                "e_event_type": [e.event_type for _, e in events],
                "e_payload": [json.dumps(e.payload) for _, e in events],
                "e_headers": [json.dumps(e.headers) for _, e in events],
                "e_created_at": [_iso(e.created_at) for _, e in events],
                "e_value": [
                    None if e.value is None else psycopg2.Binary(e.value) for _, e in events
                ],
            },
        )
        recorded = {str(row[0]) for row in rows}
        return [str(w.entry_id) in recorded for w in writes]
