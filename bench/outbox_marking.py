"""How the relay should mark an event sent: the measurement behind the outbox's design.

``python -m bench.outbox_marking [--rows N] [--batch B]`` fills a scratch
database with ``N`` realistic PushRequested rows (the relay benchmark's
backlog) and drains it, in batches of ``B``, with the relay's database side
only (claim, then mark; no broker), once per strategy:

* ``update``: ``UPDATE outbox_event SET published_at = now()`` (the schema up
  to revision 0003). PostgreSQL writes a new version of the ~1.9 KB row and,
  since ``published_at`` is in a partial index's predicate, never as a HOT
  update: new index entries too.
* ``delete``: ``DELETE`` the sent rows and insert a narrow archive row (id,
  event id, type, key, created and published times) in the same statement.
  A delete only stamps the old tuple; the archive row is ~100 bytes.
* ``side_table``: insert the sent ids into a narrow table and claim with an
  anti-join (the outbox row is never touched).

For each it prints the drain rate (rows/s of the database side alone), the
WAL written per row and the table sizes afterwards, and writes them as JSON
with ``--out``. A published *watermark* is not measured: the events of one
draft order may commit out of ``id`` order across transactions, so a
watermark needs a snapshot horizon the claim must wait for, and the rows
still have to be found again by ``outbox status`` and re-sends.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

from bench.workload import Services, connect, fill_backlog, scratch_database

_CLAIM_UNPUBLISHED = (
    "SELECT id, event_type, aggregate_id::text, value, headers FROM outbox_event"
    " WHERE published_at IS NULL AND id > %s ORDER BY id LIMIT %s"
)
_CLAIM_ALL = (
    "SELECT id, event_type, aggregate_id::text, value, headers FROM outbox_event"
    " WHERE id > %s ORDER BY id LIMIT %s"
)
_CLAIM_ANTI_JOIN = (
    "SELECT e.id, e.event_type, e.aggregate_id::text, e.value, e.headers FROM outbox_event e"
    " WHERE e.id > %s AND NOT EXISTS (SELECT 1 FROM bench_sent s WHERE s.id = e.id)"
    " ORDER BY e.id LIMIT %s"
)
_MARK_UPDATE = (
    "UPDATE outbox_event SET published_at = now()"
    " WHERE id = ANY(%s::bigint[]) AND published_at IS NULL"
)
_MARK_DELETE = (
    "WITH sent AS (DELETE FROM outbox_event WHERE id = ANY(%s::bigint[])"
    " RETURNING id, event_id, event_type, aggregate_id, created_at)"
    " INSERT INTO bench_archive SELECT id, event_id, event_type, aggregate_id, created_at, now()"
    " FROM sent"
)
_MARK_SIDE = "INSERT INTO bench_sent SELECT unnest(%s::bigint[]) ON CONFLICT DO NOTHING"
_SET_UP = (
    "CREATE TABLE bench_archive (id bigint PRIMARY KEY, event_id uuid NOT NULL,"
    " event_type text NOT NULL, aggregate_id uuid NOT NULL, created_at timestamptz NOT NULL,"
    " published_at timestamptz NOT NULL)",
    "CREATE TABLE bench_sent (id bigint PRIMARY KEY)",
)

#: strategy -> (claim SQL, mark SQL)
STRATEGIES: dict[str, tuple[str, str]] = {
    "update": (_CLAIM_UNPUBLISHED, _MARK_UPDATE),
    "delete": (_CLAIM_ALL, _MARK_DELETE),
    "side_table": (_CLAIM_ANTI_JOIN, _MARK_SIDE),
}


def _array(ids: list[int]) -> str:
    return "{" + ",".join(map(str, ids)) + "}"


def _scalar(cur: Any, sql: str) -> Any:
    cur.execute(sql)
    return cur.fetchone()[0]


def drain(cur: Any, claim_sql: str, mark_sql: str, batch: int) -> int:
    """Claim and mark until nothing is left; return the rows marked."""
    cursor, marked = 0, 0
    while True:
        cur.execute(claim_sql, (cursor, batch))
        rows = cur.fetchall()
        if not rows:
            return marked
        ids = [row[0] for row in rows]
        cur.execute(mark_sql, (_array(ids),))
        marked += len(ids)
        cursor = ids[-1]


def measure(database_url: str, strategy: str, rows: int, batch: int) -> dict[str, float]:
    """Fill ``rows`` events and drain them with ``strategy``; its figures."""
    claim_sql, mark_sql = STRATEGIES[strategy]
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("TRUNCATE outbox_event")
            cur.execute("DROP TABLE IF EXISTS bench_archive, bench_sent")
            for statement in _SET_UP:
                cur.execute(statement)
            fill_backlog(database_url, uuid.uuid4(), rows)
            cur.execute("CHECKPOINT")
            wal_before = _scalar(cur, "SELECT pg_current_wal_lsn()")
            started = time.perf_counter()
            marked = drain(cur, claim_sql, mark_sql, batch)
            elapsed = time.perf_counter() - started
            cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (wal_before,))
            wal = float(cur.fetchone()[0])
            if marked != rows:
                raise RuntimeError(f"{strategy}: marked {marked} of {rows} rows")
            sizes = {
                table: float(_scalar(cur, f"SELECT pg_total_relation_size('{table}')"))
                for table in ("outbox_event", "bench_archive", "bench_sent")
            }
    finally:
        conn.close()
    return {
        "rows_per_s": rows / elapsed,
        "wal_bytes_per_row": wal / rows,
        **{f"{table}_mib_after": size / 2**20 for table, size in sizes.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Run every strategy on one scratch database and print (and save) the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.outbox_marking")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    with scratch_database(Services.from_env()) as url:
        for strategy in STRATEGIES:
            results[strategy] = measure(url, strategy, args.rows, args.batch)
            print(strategy, json.dumps({k: round(v, 1) for k, v in results[strategy].items()}))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
