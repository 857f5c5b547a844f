"""The textbook outbox relay, the baseline of the relay benchmark.

The loop every outbox tutorial shows: in one transaction claim ONE row
(``FOR UPDATE SKIP LOCKED``), produce it, flush (wait for the broker's ack),
mark it published (here as ours does: delete it and record it in
``outbox_published``), commit; repeat. It sends exactly what ours sends (the
value the writer stored in ``outbox_event.value``, else
``adapters.avro.records.encode_outbox_event`` with the shared codec; same key
and headers) on the same idempotent ``acks=all`` producer settings, so the
difference measured is the loop, not the encoding or the client.

``python -m bench.textbook_relay --max-rows N --max-seconds S`` prints one JSON
line: ``{"rows": ..., "seconds": ..., "events_per_s": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from adapters.avro.records import encode_outbox_event
from adapters.kafka.config import producer_config
from adapters.kafka.producer import DeliveryReport, EventProducer
from adapters.kafka.topics import TopicNames
from adapters.postgres.outbox_relay import MARK_PUBLISHED_SQL
from bench.workload import OUTBOX_COLUMNS, connect, has_value_column, outbox_event
from domain.records import EVENT_PUSH_REQUESTED

_CLAIM_ONE = (
    f"SELECT {OUTBOX_COLUMNS}, {{value}} FROM outbox_event"
    " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
)


def run_textbook(
    database_url: str,
    bootstrap_servers: str,
    topic_prefix: str,
    *,
    max_rows: int,
    max_seconds: float,
) -> dict[str, float]:
    """Publish one row per transaction until ``max_rows`` or ``max_seconds``; return the rate."""
    topic = TopicNames(topic_prefix).requests
    producer = EventProducer(producer_config(bootstrap_servers, client_id="bench-textbook-relay"))
    conn = connect(database_url)
    # Rows carry the value their writer encoded (outbox_event.value) where the schema has it.
    claim = _CLAIM_ONE.format(value="value" if has_value_column(conn) else "NULL")
    conn.autocommit = False
    reports: list[DeliveryReport] = []
    rows = 0
    started = time.perf_counter()
    # The clock starts after the first row: connecting and the first metadata
    # round trip are start-up, as they are excluded for our relay too.
    warm: float | None = None
    try:
        while rows < max_rows and time.perf_counter() - started < max_seconds:
            with conn.cursor() as cur:
                cur.execute(claim)
                row = cur.fetchone()
                if row is None:
                    conn.rollback()
                    break
                event = outbox_event(row)
                if event.event_type != EVENT_PUSH_REQUESTED:
                    raise SystemExit(f"textbook relay: unexpected event type {event.event_type}")
                producer.produce(
                    topic,
                    str(event.aggregate_id).encode(),
                    event.value if event.value is not None else encode_outbox_event(event),
                    event.headers,
                    reports.append,
                )
                producer.flush(30.0)
                report = reports.pop()
                if not report.ok:
                    raise SystemExit(f"textbook relay: delivery failed: {report.error}")
                cur.execute(MARK_PUBLISHED_SQL, ([event.id],))
            conn.commit()
            rows += 1
            if warm is None:
                warm = time.perf_counter()
        seconds = time.perf_counter() - (warm or started)
    finally:
        conn.close()
        producer.close(10.0)
    timed = max(0, rows - 1)
    return {
        "rows": rows,
        "seconds": seconds,
        "events_per_s": timed / seconds if seconds > 0 else 0.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the textbook relay and print its rate as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.textbook_relay", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic-prefix", required=True)
    parser.add_argument("--max-rows", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    result = run_textbook(
        args.database_url,
        args.bootstrap_servers,
        args.topic_prefix,
        max_rows=args.max_rows,
        max_seconds=args.max_seconds,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
