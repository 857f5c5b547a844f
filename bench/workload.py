"""What the benchmarks push through the pipeline: ~1 KB PushRequested events and scratch databases.

The events are the ones ``approve_draft_order`` writes (``build_push_requested``
of a realistic order); a backlog is inserted by ONE ``INSERT ... SELECT`` over
``generate_series`` that gives every row its own order id, event id,
idempotency key and trace, so filling a million rows takes seconds, not an
hour of approvals.
"""

from __future__ import annotations

import importlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from adapters.crypto.encryption import ConfigCipher
from adapters.crypto.keys import MASTER_KEY_ENV, generate_master_key
from adapters.postgres import migrate
from adapters.postgres.admin import temporary_database
from adapters.postgres.outbox_relay import psycopg2_dsn
from domain.model import DraftOrder, OrderLine
from domain.records import OutboxEvent
from producer.approval import build_push_requested

psycopg2: Any = importlib.import_module("psycopg2")

#: Lines per benchmark order: with their descriptions the outbox payload is ~1 KB.
ORDER_LINES = 4


def ensure_master_key() -> None:
    """Give this process (and so its children) an ``ENCRYPTION_MASTER_KEY`` if it has none."""
    if not os.environ.get(MASTER_KEY_ENV):
        os.environ[MASTER_KEY_ENV] = generate_master_key()


def bench_order(org_id: uuid.UUID, index: int, order_id: uuid.UUID | None = None) -> DraftOrder:
    """Benchmark order number ``index``: four lines with real-looking descriptions (~1 KB)."""
    return DraftOrder(
        id=order_id or uuid.uuid4(),
        org_id=org_id,
        order_number=f"BENCH-{index:07d}",
        customer_code=f"CUST-{1000 + index % 97}",
        currency="EUR",
        lines=tuple(
            OrderLine(
                line_no=n,
                product_code=f"SKU-{(index * 7 + n) % 10_000:05d}",
                quantity=Decimal(n * 3),
                unit_price=Decimal("12.45") * n,
                description=f"Stainless steel fastener kit, assortment {n}, 240 pieces, boxed",
            )
            for n in range(1, ORDER_LINES + 1)
        ),
        notes="Deliver to loading dock B between 8:00 and 16:00; call the warehouse first.",
    )


def push_requested(org_id: uuid.UUID, index: int) -> OutboxEvent:
    """The outbox event ``approve_draft_order`` would write for :func:`bench_order`."""
    return build_push_requested(bench_order(org_id, index), occurred_at=datetime.now(UTC))


def payload_bytes(event: OutboxEvent) -> int:
    """Size of the event's JSON payload as stored (compact JSON)."""
    return len(json.dumps(event.payload, separators=(",", ":")).encode())


# Every row its own ids; the template's order id, order number, event id, key and
# trace are replaced. ``%(...)s`` are psycopg2 parameters.
_FILL_SQL = """
INSERT INTO outbox_event
    (event_id, aggregate_type, aggregate_id, org_id, event_type, payload, headers, created_at)
SELECT s.event_id, %(aggregate_type)s, s.order_id, %(org_id)s, %(event_type)s,
       %(payload)s::jsonb
           || jsonb_build_object('id', s.order_id::text,
                                 'order_number', 'BENCH-' || lpad(s.g::text, 7, '0')),
       %(headers)s::jsonb
           || jsonb_build_object(
                'event_id', s.event_id::text,
                'idempotency_key', 'erp-push:' || %(org_text)s || ':' || s.order_id::text || ':0',
                'traceparent', '00-' || md5(s.event_id::text) || '-'
                               || substr(md5(s.order_id::text), 1, 16) || '-01'),
       now()
FROM (SELECT g, gen_random_uuid() AS event_id, gen_random_uuid() AS order_id
      FROM generate_series(%(first)s, %(last)s) AS g) AS s
"""


def connect(database_url: str) -> Any:
    """A psycopg2 connection (autocommit) to a SQLAlchemy ``database_url``."""
    conn = psycopg2.connect(**psycopg2_dsn(database_url))
    conn.autocommit = True
    return conn


def fill_backlog(database_url: str, org_id: uuid.UUID, count: int, chunk: int = 100_000) -> int:
    """Insert ``count`` unpublished PushRequested rows of ``org_id``; return the payload size.

    Chunks of ``chunk`` rows, each one statement; then ``VACUUM ANALYZE`` so
    every relay starts from the same well-kept table.
    """
    template = push_requested(org_id, 0)
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            for first in range(1, count + 1, chunk):
                cur.execute(
                    _FILL_SQL,
                    {
                        "aggregate_type": template.aggregate_type,
                        "event_type": template.event_type,
                        "org_id": str(org_id),
                        "org_text": str(org_id),
                        "payload": json.dumps(template.payload),
                        "headers": json.dumps(template.headers),
                        "first": first,
                        "last": min(count, first + chunk - 1),
                    },
                )
            cur.execute("VACUUM ANALYZE outbox_event")
    finally:
        conn.close()
    return payload_bytes(template)


def count_unpublished(database_url: str) -> int:
    """Rows of ``outbox_event`` not yet published."""
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM outbox_event WHERE published_at IS NULL")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def published_times(database_url: str) -> list[tuple[float, int]]:
    """``(epoch seconds of published_at, rows)`` per distinct publish time, ascending."""
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT extract(epoch FROM published_at)::float8, count(*) FROM outbox_event"
                " WHERE published_at IS NOT NULL GROUP BY 1 ORDER BY 1"
            )
            return [(float(t), int(n)) for t, n in cur.fetchall()]
    finally:
        conn.close()


def success_times(database_url: str) -> list[float]:
    """Epoch seconds at which each SUCCESS row of the push log was written, ascending."""
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT extract(epoch FROM updated_at)::float8 FROM erp_push_log"
                " WHERE status = 'SUCCESS' ORDER BY 1"
            )
            return [float(row[0]) for row in cur.fetchall()]
    finally:
        conn.close()


def count_success(database_url: str) -> int:
    """SUCCESS rows of the push log."""
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM erp_push_log WHERE status = 'SUCCESS'")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def add_mock_connection(database_url: str, org_id: uuid.UUID, latency_ms: float) -> None:
    """Store the org's ACTIVE MOCK connection (encrypted like any other) with ``latency_ms``."""
    from domain.records import ConnectionRecord
    from entrypoints import bootstrap

    blob = ConfigCipher.from_env().encrypt_config(
        {"mode": "success", "latency_ms": latency_ms}, org_id=org_id, connector_type="MOCK"
    )
    engine = bootstrap.make_engine(database_url)
    try:
        uow = bootstrap.sql_unit_of_work(session_factory=bootstrap.session_factory(engine=engine))
        with uow:
            uow.connections.add(ConnectionRecord.new(org_id, "MOCK", blob))
            uow.commit()
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Services:
    """The local services' endpoints (from ``.infra/endpoints.env`` via the Makefile)."""

    database_url: str
    bootstrap_servers: str

    @classmethod
    def from_env(cls) -> Services:
        """Read ``DATABASE_URL`` and ``KAFKA_BOOTSTRAP_SERVERS``; exit with a hint if unset."""
        database_url = os.environ.get("DATABASE_URL")
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not database_url or not bootstrap:
            raise SystemExit(
                "bench: DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS must be set; run `make bench`"
            )
        return cls(database_url, bootstrap)


@contextmanager
def scratch_database(services: Services) -> Iterator[str]:
    """A migrated database of its own on the local server, dropped afterwards."""
    with temporary_database(services.database_url, prefix="bench") as url:
        migrate.upgrade(url)
        yield url
