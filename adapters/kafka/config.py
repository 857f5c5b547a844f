"""librdkafka configuration for the pipeline's producers, consumers and admin client.

Plain functions returning plain dicts, so the settings that carry the delivery
guarantees are visible in one place and checked by unit tests. ``extra``
entries are applied last (tuning, security settings), except that the
guarantee-bearing keys of :data:`PRODUCER_GUARANTEES` / :data:`CONSUMER_GUARANTEES`
cannot be overridden by accident.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from adapters.kafka.logs import ErrorReporter, commit_reporter, librdkafka_logger

Compression = Literal["lz4", "zstd", "snappy", "gzip", "none"]

#: Producer settings the pipeline's guarantees rest on (at-least-once, order per key).
PRODUCER_GUARANTEES: Mapping[str, Any] = {
    # Broker de-duplicates retried batches (producer id + sequence numbers), so a
    # retry after a lost ack neither duplicates nor reorders.
    "enable.idempotence": True,
    # Ack only once every in-sync replica has the record.
    "acks": "all",
    # At most 5 in flight is the limit under which idempotence keeps per-partition order.
    "max.in.flight.requests.per.connection": 5,
    # Same key -> same partition as the Java client's default partitioner, so upstream
    # services publishing requests directly (DESIGN.md §1) keep per-order ordering with us.
    # librdkafka's own default (consistent_random, CRC32) would hash keys differently.
    "partitioner": "murmur2_random",
    # Never let produce() auto-create a missing topic with the broker's default
    # (1 partition): topics are created by ensure_topics() with the configured layout.
    "allow.auto.create.topics": False,
}

#: Consumer settings the pipeline's guarantees rest on (offsets only after the DB commit).
CONSUMER_GUARANTEES: Mapping[str, Any] = {
    # Auto-commit runs in the background but only commits what was *stored*, and we store
    # an offset only after the database transaction for that message committed.
    "enable.auto.commit": True,
    "enable.auto.offset.store": False,
    # A new group starts at the beginning: no request published before the first start is lost.
    "auto.offset.reset": "earliest",
    # Incremental rebalances: a joining/leaving member does not revoke every partition,
    # so retries paused on other partitions are not disturbed.
    "partition.assignment.strategy": "cooperative-sticky",
    # The classic group protocol: KIP-848's "consumer" protocol ignores the assignor above.
    "group.protocol": "classic",
}


#: Consumer settings for the pipeline's latency (approval -> PushResult, issue 6).
#: None of them touches a guarantee: they only decide when fetched records arrive.
CONSUMER_LATENCY: Mapping[str, Any] = {
    # The broker answers a fetch as soon as ONE byte is there (Kafka's default, stated
    # here because the e2e latency rests on it): a larger value trades latency for
    # fewer, fuller fetches, which the pipeline's small records do not need.
    "fetch.min.bytes": 1,
    # How long the broker may hold a fetch that has no data (librdkafka's default is
    # 500 ms). New data ends the wait at once either way; but a partition that joins
    # the fetch meanwhile (resumed after the worker paused it, newly assigned) is
    # only fetched with the NEXT request, so the held one delays it by up to this
    # much. 100 ms bounds that; an idle consumer sends ~10 empty fetches a second
    # per broker, which costs the broker next to nothing.
    "fetch.wait.max.ms": 100,
    # After a fetch error (leader moved, broker restarting) retry after 100 ms, not
    # librdkafka's 500 ms: the error is usually over by then.
    "fetch.error.backoff.ms": 100,
}


def _base(bootstrap_servers: str, client_id: str, logger: logging.Logger | None) -> dict[str, Any]:
    if not bootstrap_servers:
        raise ValueError("bootstrap_servers must not be empty")
    if not client_id:
        raise ValueError("client_id must not be empty")
    return {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        # Idle connections closed by the broker are routine; do not log each one.
        "log.connection.close": False,
        # TCP_NODELAY. librdkafka leaves Nagle's algorithm on by default: a small
        # request written while an earlier one is unacknowledged (pipelined produce
        # requests, a fetch right after a produce) then waits for the peer's ACK,
        # which delayed ACK can hold back up to 40 ms on Linux. Every record of the
        # pipeline is small and latency-bound; batching is linger.ms's job, not TCP's.
        "socket.nagle.disable": True,
        "error_cb": ErrorReporter(logger),
        "logger": librdkafka_logger(),
    }


def _apply_extra(
    config: dict[str, Any], extra: Mapping[str, Any] | None, locked: Mapping[str, Any]
) -> dict[str, Any]:
    for key, value in (extra or {}).items():
        if key in locked and value != locked[key]:
            raise ValueError(f"{key}={value!r} would break the pipeline's delivery guarantees")
        config[key] = value
    return config


def producer_config(
    bootstrap_servers: str,
    *,
    client_id: str = "orderflow-producer",
    linger_ms: int = 5,
    batch_size: int = 256 * 1024,
    compression: Compression = "lz4",
    delivery_timeout_ms: int = 120_000,
    queue_max_messages: int = 100_000,
    queue_max_kbytes: int = 64 * 1024,
    logger: logging.Logger | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the config of the idempotent producer (relay, consumer's retry/DLQ/result writes).

    ``linger_ms`` trades a few ms of latency for batching; ``delivery_timeout_ms``
    (librdkafka's ``message.timeout.ms``) bounds how long a message may wait for
    the broker before its delivery report carries an error (the outbox keeps the
    event, so the relay retries it). ``queue_max_*`` bound the local buffer: a
    full buffer makes ``produce`` wait (see :class:`~adapters.kafka.producer.EventProducer`).

    Latency (issue 6): the default ``linger_ms`` of 5 suits producers off the
    approval -> PushResult path (the worker's retry and DLQ writes, whose records
    wait seconds anyway); the relay, which carries both the request and the
    result, passes its own (``entrypoints.relay_wiring.RELAY_LINGER_MS``). ``acks=all``
    and idempotence stay whatever the latency: an ack then costs one replication
    round trip to the in-sync followers (none on a one-broker cluster), and
    losing an acknowledged event would break at-least-once.
    """
    if linger_ms < 0 or batch_size < 1 or delivery_timeout_ms < 1:
        raise ValueError("linger_ms must be >= 0, batch_size and delivery_timeout_ms >= 1")
    config = _base(bootstrap_servers, client_id, logger)
    config.update(PRODUCER_GUARANTEES)
    config.update(
        {
            "linger.ms": linger_ms,
            "batch.size": batch_size,
            "compression.type": compression,
            "message.timeout.ms": delivery_timeout_ms,
            "queue.buffering.max.messages": queue_max_messages,
            "queue.buffering.max.kbytes": queue_max_kbytes,
        }
    )
    return _apply_extra(config, extra, PRODUCER_GUARANTEES)


def consumer_config(
    bootstrap_servers: str,
    *,
    group_id: str,
    client_id: str = "orderflow-consumer",
    max_poll_interval_ms: int = 300_000,
    session_timeout_ms: int = 45_000,
    auto_commit_interval_ms: int = 1_000,
    fetch_wait_max_ms: int = 100,
    logger: logging.Logger | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the config of a pipeline consumer in group ``group_id``.

    ``max_poll_interval_ms`` is how long the application may go between
    ``poll_batch`` calls before the broker considers it stuck and reassigns its
    partitions; ERP calls run off the poll loop, so the default 5 minutes is a
    safety net, not a budget. ``auto_commit_interval_ms`` only bounds how stale
    the committed offsets are (redelivery after a crash is deduplicated anyway).
    ``fetch_wait_max_ms`` bounds how long the broker holds a fetch with no new
    data (see :data:`CONSUMER_LATENCY`).
    """
    if not group_id:
        raise ValueError("group_id must not be empty")
    if fetch_wait_max_ms < 1:
        raise ValueError("fetch_wait_max_ms must be >= 1")
    if max_poll_interval_ms < session_timeout_ms:
        # librdkafka refuses this combination at construction; say why earlier.
        raise ValueError("max_poll_interval_ms must be >= session_timeout_ms")
    config = _base(bootstrap_servers, client_id, logger)
    config["on_commit"] = commit_reporter(config["error_cb"])
    config.update(CONSUMER_GUARANTEES)
    config.update(
        {
            "group.id": group_id,
            "max.poll.interval.ms": max_poll_interval_ms,
            "session.timeout.ms": session_timeout_ms,
            "auto.commit.interval.ms": auto_commit_interval_ms,
            # Partition EOF is not an event the pipeline cares about.
            "enable.partition.eof": False,
            **CONSUMER_LATENCY,
            "fetch.wait.max.ms": fetch_wait_max_ms,
        }
    )
    return _apply_extra(config, extra, CONSUMER_GUARANTEES)


def admin_config(
    bootstrap_servers: str,
    *,
    client_id: str = "orderflow-admin",
    logger: logging.Logger | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the config of an ``AdminClient`` (topic creation at start-up)."""
    return _apply_extra(_base(bootstrap_servers, client_id, logger), extra, {})
