"""Where the end-to-end latency goes: one order's way through the pipeline, hop by hop.

Every stamp is wall-clock time of this one machine (processes, PostgreSQL and the
Kafka broker share the clock), taken where the pipeline already records it:

====================  =========================================================
``committed``         the approver, as it calls ``approve_draft_order`` (before
                      its COMMIT: a time taken after the call returned could
                      come after the order was already readable)
``request_produced``  CreateTime of the PushRequested record (the relay's
                      ``produce()`` call; librdkafka stamps whole milliseconds)
``request_marked``    ``outbox_published.published_at`` of the request (``now()`` of
                      the relay's marking statement, after the broker's ack)
``claimed``           ``erp_push_log.created_at`` (the worker's clock as it
                      builds the claim, before the claim's commit)
``outcome``           ``erp_push_log.updated_at`` (the worker's clock as it
                      records the outcome, before that commit)
``result_produced``   CreateTime of the PushResult record (the relay again)
``result_marked``     ``outbox_published.published_at`` of the PushResult
``read``              the bench's results reader got the record
====================  =========================================================

The hops of the critical path are consecutive differences of ``committed ->
request_produced -> claimed -> outcome -> result_produced -> read``; the
``*_acked`` figures (produced -> marked) run beside it (the worker does not wait
for the relay's marking). Only orders with every stamp count; CreateTime's
millisecond truncation moves up to 1 ms between neighbouring hops.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

from bench.stats import latency_summary

#: The critical path, in order: each hop is the time from one stamp to the next.
CHAIN = ("committed", "request_produced", "claimed", "outcome", "result_produced", "read")
#: Beside the path: from a record's produce() call to the relay marking it published.
SIDE = {
    "request_acked": ("request_produced", "request_marked"),
    "result_acked": ("result_produced", "result_marked"),
}

Stamps = dict[str, dict[uuid.UUID, float]]


def hop_breakdown(stamps: Stamps) -> dict[str, dict[str, float]]:
    """Latency summary (ms) of every hop, over the orders that have both its stamps.

    ``stamps`` maps a stamp name (see :data:`CHAIN`, :data:`SIDE`) to each
    order's time (epoch seconds). Each hop also reports its ``orders`` count.
    """
    hops: dict[str, tuple[str, str]] = {
        f"{start}->{end}": (start, end) for start, end in itertools.pairwise(CHAIN)
    }
    hops.update(SIDE)
    hops["total"] = (CHAIN[0], CHAIN[-1])
    breakdown: dict[str, dict[str, float]] = {}
    for name, (start, end) in hops.items():
        first, last = stamps.get(start, {}), stamps.get(end, {})
        deltas = [(last[order] - first[order]) * 1000 for order in first if order in last]
        summary = latency_summary(deltas)
        summary["orders"] = float(len(deltas))
        breakdown[name] = summary
    return breakdown


def format_breakdown(breakdown: Mapping[str, Mapping[str, float]]) -> str:
    """The breakdown as an aligned text table (one line per hop)."""
    lines = [f"{'hop':<34}{'p50':>9}{'p95':>9}{'p99':>9}{'mean':>9}{'orders':>8}"]
    for name, s in breakdown.items():
        lines.append(
            f"{name:<34}{s['p50_ms']:>9.1f}{s['p95_ms']:>9.1f}{s['p99_ms']:>9.1f}"
            f"{s['mean_ms']:>9.1f}{int(s['orders']):>8}"
        )
    return "\n".join(lines)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def database_stamps(database_url: str, org_id: uuid.UUID) -> Stamps:
    """``request_marked``, ``claimed``, ``outcome`` and ``result_marked`` of ``org_id``'s orders."""
    from bench.workload import connect

    stamps: Stamps = {"request_marked": {}, "result_marked": {}, "claimed": {}, "outcome": {}}
    marked = {"PushRequested": "request_marked", "PushResult": "result_marked"}
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT aggregate_id::text, event_type, published_at FROM outbox_published"
                " WHERE org_id = %s ORDER BY id",
                (str(org_id),),
            )
            for order, event_type, published in cur.fetchall():
                at = _epoch(published)
                name = marked.get(event_type)
                if name is not None and at is not None:
                    # The first event of its type per order (a retry chain has more results).
                    stamps[name].setdefault(uuid.UUID(order), at)
            cur.execute(
                "SELECT draft_order_id::text, created_at, updated_at FROM erp_push_log"
                " WHERE org_id = %s AND attempt = 0",
                (str(org_id),),
            )
            for order, created, updated in cur.fetchall():
                stamps["claimed"][uuid.UUID(order)] = created.timestamp()
                stamps["outcome"][uuid.UUID(order)] = updated.timestamp()
    finally:
        conn.close()
    return stamps


def kafka_create_times(bootstrap_servers: str, topic: str) -> dict[uuid.UUID, float]:
    """CreateTime (epoch seconds) of the first record of each key (an order id) of ``topic``."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"{topic}-hops-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    stamps: dict[uuid.UUID, float] = {}
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        todo = set()
        assignment = []
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                todo.add(partition)
                assignment.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        consumer.assign(assignment)
        idle = 0
        while todo and idle < 20:
            messages = consumer.consume(num_messages=1000, timeout=0.5)
            idle = 0 if messages else idle + 1
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        todo.discard(message.partition())
                    continue
                key = message.key()
                kind, millis = message.timestamp()
                if key is None or kind == 0:  # TIMESTAMP_NOT_AVAILABLE
                    continue
                stamps.setdefault(uuid.UUID(key.decode()), millis / 1000)
    finally:
        consumer.close()
    return stamps


def collect(
    database_url: str,
    bootstrap_servers: str,
    org_id: uuid.UUID,
    requests_topic: str,
    results_topic: str,
    committed: Mapping[uuid.UUID, float],
    read_at: Mapping[uuid.UUID, float],
) -> Stamps:
    """Every stamp of :data:`CHAIN` and :data:`SIDE` for this run's orders."""
    stamps = database_stamps(database_url, org_id)
    stamps["committed"] = dict(committed)
    stamps["read"] = dict(read_at)
    stamps["request_produced"] = kafka_create_times(bootstrap_servers, requests_topic)
    stamps["result_produced"] = kafka_create_times(bootstrap_servers, results_topic)
    return stamps


def only(stamps: Stamps, orders: Iterable[uuid.UUID]) -> Stamps:
    """``stamps`` restricted to ``orders``."""
    keep = set(orders)
    return {name: {o: t for o, t in by.items() if o in keep} for name, by in stamps.items()}
