"""What the benchmarks push through the pipeline: ~1 KB PushRequested events and scratch databases.

The events are the ones ``approve_draft_order`` writes (``build_push_requested``
of a realistic order); a backlog is inserted by ONE ``INSERT ... SELECT`` over
``generate_series`` that gives every row its own order id, event id,
idempotency key and trace, so filling a million rows takes seconds, not an
hour of approvals.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from adapters.crypto.encryption import ConfigCipher
from adapters.crypto.keys import MASTER_KEY_ENV, generate_master_key
from adapters.postgres import migrate
from adapters.postgres.admin import temporary_database
from adapters.postgres.outbox_relay import psycopg2_dsn
from domain.model import DraftOrder
from domain.records import OutboxEvent
from entrypoints.demo_support import demo_order
from producer.approval import build_push_requested

#: Texts of a benchmark order: with them the outbox payload is ~1 KB, as issue 6 asks.
LINE_TEXT = (
    "Stainless steel fastener kit, metric, hex socket cap screws with washers and nuts, "
    "240 pieces, boxed"
)
NOTES = "Deliver to loading dock B between 8:00 and 16:00; call the warehouse first."


def ensure_master_key() -> None:
    """Give this process (and so its children) an ``ENCRYPTION_MASTER_KEY`` if it has none."""
    if not os.environ.get(MASTER_KEY_ENV):
        os.environ[MASTER_KEY_ENV] = generate_master_key()


def bench_order(org_id: uuid.UUID, index: int) -> DraftOrder:
    """Benchmark order number ``index``: the demo's order with real-looking texts (~1 KB)."""
    order = demo_order(org_id, index)
    return replace(
        order,
        order_number=f"BENCH-{index:07d}",
        lines=tuple(
            replace(line, description=f"{LINE_TEXT}, assortment {line.line_no}")
            for line in order.lines
        ),
        notes=NOTES,
    )


def push_requested(org_id: uuid.UUID, index: int) -> OutboxEvent:
    """The outbox event ``approve_draft_order`` would write for :func:`bench_order`."""
    return build_push_requested(bench_order(org_id, index), occurred_at=datetime.now(UTC))


def outbox_value(event: OutboxEvent) -> bytes:
    """The Kafka value a writer stores with ``event`` (the composition root's encoder)."""
    from adapters.avro.outbox_values import outbox_value_encoder

    value = outbox_value_encoder()(event)
    if value is None:
        raise ValueError(f"No encoder for {event.event_type}")
    return value


def payload_bytes(event: OutboxEvent) -> int:
    """Size of the event's JSON payload as stored (compact JSON)."""
    return len(json.dumps(event.payload, separators=(",", ":")).encode())


# Every row its own ids; the template's order id, order number, event id, key and
# trace are replaced. ``value`` is the template's Kafka value with the same
# replacements made in its bytes: every replaced field has a fixed length (UUID
# text, a zero-padded order number), so the result is exactly what the writer's
# encoder gives for the row (``check_values`` verifies a sample after each fill).
# ``%(...)s`` are psycopg2 parameters.
_FILL_SQL = """
INSERT INTO outbox_event
    (event_id, aggregate_type, aggregate_id, org_id, event_type, payload, headers, created_at
     {value_column})
SELECT s.event_id, %(aggregate_type)s, s.order_id, %(org_id)s, %(event_type)s,
       %(payload)s::jsonb
           || jsonb_build_object('id', s.order_id::text, 'order_number', s.order_number),
       %(headers)s::jsonb
           || jsonb_build_object(
                'event_id', s.event_id::text,
                'idempotency_key', 'erp-push:' || %(org_text)s || ':' || s.order_id::text || ':0',
                'traceparent', '00-' || md5(s.event_id::text) || '-'
                               || substr(md5(s.order_id::text), 1, 16) || '-01'),
       %(created_at)s
       {value_expression}
FROM (SELECT g, gen_random_uuid() AS event_id, gen_random_uuid() AS order_id,
             'BENCH-' || lpad(g::text, 7, '0') AS order_number
      FROM generate_series(%(first)s, %(last)s) AS g) AS s
"""


def _value_sql(template_value: bytes, replacements: dict[str, str]) -> str:
    """SQL of the row's value: ``overlay`` each column's text where the template's stands.

    ``replacements`` maps the template's text to the SQL text expression that
    replaces it (same length, so no other byte moves).
    """
    expression = "%(value)s::bytea"
    for text, column in replacements.items():
        needle = text.encode()
        start = template_value.find(needle)
        if start < 0:
            raise ValueError(f"{text!r} is not in the template's value")
        while start >= 0:
            expression = (
                f"overlay({expression} placing convert_to({column}, 'UTF8')"
                f" from {start + 1} for {len(needle)})"
            )
            start = template_value.find(needle, start + len(needle))
    return ",\n       " + expression


def has_value_column(conn: Any) -> bool:
    """Whether ``outbox_event`` has the ``value`` column (the Kafka value stored by writers)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM information_schema.columns"
            " WHERE table_name = 'outbox_event' AND column_name = 'value'"
        )
        return cur.fetchone() is not None


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
        with_value = has_value_column(conn)
        value = outbox_value(template) if with_value else b""
        value_sql = ""
        if with_value:
            value_sql = _value_sql(
                value,
                {
                    str(template.aggregate_id): "s.order_id::text",
                    str(template.event_id): "s.event_id::text",
                    template.payload["order_number"]: "s.order_number",
                },
            )
        sql = _FILL_SQL.format(
            value_column=", value" if with_value else "", value_expression=value_sql
        )
        params: dict[str, Any] = {
            "aggregate_type": template.aggregate_type,
            "event_type": template.event_type,
            "org_id": str(org_id),
            "org_text": str(org_id),
            "payload": json.dumps(template.payload),
            "headers": json.dumps(template.headers),
            "created_at": template.created_at,
        }
        if with_value:
            params["value"] = value
        with conn.cursor() as cur:
            for first in range(1, count + 1, chunk):
                cur.execute(sql, {**params, "first": first, "last": min(count, first + chunk - 1)})
            cur.execute("VACUUM ANALYZE outbox_event")
        if with_value:
            check_values(conn)
    finally:
        conn.close()
    return payload_bytes(template)


def check_values(conn: Any, sample: int = 50) -> None:
    """Raise unless sampled rows' ``value`` is what the writer's encoder gives for the row."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {OUTBOX_COLUMNS}, value FROM outbox_event TABLESAMPLE SYSTEM (5) LIMIT %s",
            (sample,),
        )
        rows = cur.fetchall()
    for row in rows:
        event = outbox_event(row)
        stored = event.value
        if outbox_value(replace(event, value=None)) != stored:
            raise RuntimeError(
                f"backlog row {event.event_id}: stored value differs from its encoding"
            )


#: Columns :func:`outbox_event` reads, in its order (``value`` follows them).
OUTBOX_COLUMNS = (
    "id, event_id, aggregate_type, aggregate_id, org_id, event_type, payload, headers, created_at"
)


def outbox_event(row: Sequence[Any]) -> OutboxEvent:
    """The :class:`OutboxEvent` of a row of :data:`OUTBOX_COLUMNS` plus ``value``."""
    seq, event_id, aggregate_type, aggregate_id, org_id, event_type, payload, headers, at, value = (
        row
    )
    return OutboxEvent(
        event_id=uuid.UUID(str(event_id)),
        aggregate_type=aggregate_type,
        aggregate_id=uuid.UUID(str(aggregate_id)),
        org_id=uuid.UUID(str(org_id)),
        event_type=event_type,
        payload=payload,
        headers={str(k): str(v) for k, v in headers.items()},
        created_at=at,
        id=int(seq),
        value=None if value is None else bytes(value),
    )


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one statement, on a connection of its own."""
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(row) for row in cur.fetchall()]
    finally:
        conn.close()


def count_unpublished(database_url: str) -> int:
    """Events not yet published (every ``outbox_event`` row: the relay deletes what it sent)."""
    sql = "SELECT count(*) FROM outbox_event"
    return int(query(database_url, sql)[0][0])


def published_times(database_url: str) -> list[tuple[float, int]]:
    """``(epoch seconds of published_at, rows)`` per distinct publish time, ascending.

    From ``outbox_published``, where the relay records each event it sent.
    """
    rows = query(
        database_url,
        "SELECT extract(epoch FROM published_at)::float8, count(*) FROM outbox_published"
        " GROUP BY 1 ORDER BY 1",
    )
    return [(float(t), int(n)) for t, n in rows]


def success_times(database_url: str) -> list[float]:
    """Epoch seconds at which each SUCCESS row of the push log was written, ascending."""
    rows = query(
        database_url,
        "SELECT extract(epoch FROM updated_at)::float8 FROM erp_push_log"
        " WHERE status = 'SUCCESS' ORDER BY 1",
    )
    return [float(row[0]) for row in rows]


def count_success(database_url: str) -> int:
    """SUCCESS rows of the push log."""
    sql = "SELECT count(*) FROM erp_push_log WHERE status = 'SUCCESS'"
    return int(query(database_url, sql)[0][0])


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


def service_args(services: Services, database_url: str, topic_prefix: str) -> list[str]:
    """``--database-url``, ``--bootstrap-servers`` and ``--topic-prefix`` of a child process."""
    return [
        "--database-url",
        database_url,
        "--bootstrap-servers",
        services.bootstrap_servers,
        "--topic-prefix",
        topic_prefix,
    ]


@contextmanager
def scratch_database(services: Services) -> Iterator[str]:
    """A migrated database of its own on the local server, dropped afterwards."""
    with temporary_database(services.database_url, prefix="bench") as url:
        migrate.upgrade(url)
        yield url
