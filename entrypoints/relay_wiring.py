"""The relay process's wiring: routes, the Kafka sink, the topics, and running it.

``orderflow relay`` (``entrypoints.relay_process``) calls :func:`run_relay`;
benchmarks and tests build relays with :func:`build_relay`.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from confluent_kafka.admin import AdminClient

from adapters.avro.outbox_values import OutboxValueEncoder
from adapters.kafka.config import admin_config, producer_config
from adapters.kafka.event_sink import KafkaEventSink
from adapters.kafka.topics import TopicNames, ensure_topics
from adapters.postgres.outbox_relay import PgOutboxRelayStore
from domain.events import EVENT_TYPES, retry_route
from domain.outbox_ports import EventSink, OutboxSource, Route
from domain.records import OutboxEvent
from entrypoints import bootstrap
from producer.relay import OutboxRelay
from producer.relay_settings import RelayExit, RelaySettings

_log = logging.getLogger("orderflow.relay")

#: ``linger.ms`` of the relay's producer: batching while a backlog is produced; a
#: caught-up relay's messages go at once (see :meth:`KafkaEventSink.poll`).
RELAY_LINGER_MS = 5

#: librdkafka settings of the relay's producer on top of the pipeline's guarantees
#: (idempotence, acks=all, order per partition; ``adapters.kafka.config``).
RELAY_PRODUCER_EXTRA: Mapping[str, Any] = {
    # Never give up on a message while the broker is away: the outbox keeps it
    # anyway, and a timed-out message could leave a gap that a re-send fills out
    # of order. Memory stays bounded by the relay's in-flight window.
    # Other failures are permanent broker refusals (e.g. a record too large); the
    # relay re-sends from the first unacknowledged event. (librdkafka's
    # enable.gapless.guarantee would make those fatal, but it is experimental.)
    "message.timeout.ms": 0,
}


@dataclass(frozen=True)
class RelayConfig:
    """Where the relay connects and how its topics look."""

    database_url: str
    bootstrap_servers: str
    topic_prefix: str = "orderflow"
    partitions: int = 6
    replication_factor: int = 1
    retry_tiers: int = 3
    #: Create missing topics at start (``ensure_topics``); off when an operator manages them.
    ensure_topics: bool = True
    client_id: str = "orderflow-relay"
    #: librdkafka overrides on top of :data:`RELAY_PRODUCER_EXTRA`.
    producer_extra: Mapping[str, Any] | None = None


def relay_routes(topics: TopicNames, encoder: OutboxValueEncoder) -> dict[str, Route]:
    """A route per event type of ``domain.events`` (each retry tier of ``topics``).

    ``encoder`` is the writers' one, used only for rows stored without a value.
    """

    def encode(event: OutboxEvent) -> bytes:
        value = encoder(event)
        if value is None:
            raise ValueError(f"no Kafka value for event type {event.event_type!r}")
        return value

    routes = [*EVENT_TYPES.values()]
    routes += [retry_route(tier) for tier in range(1, topics.retry_tiers + 1)]
    return {route.event_type: Route(topics.topic_for(route), encode) for route in routes}


def kafka_sink_factory(
    config: RelayConfig, settings: RelaySettings | None = None
) -> Callable[[], EventSink]:
    r"""Return a factory of idempotent :class:`KafkaEventSink`\ s for ``config``."""
    settings = settings or RelaySettings()
    extra = {**RELAY_PRODUCER_EXTRA, **(config.producer_extra or {})}
    producer_settings = producer_config(
        config.bootstrap_servers,
        client_id=config.client_id,
        # The local queue must hold the whole window, or produce() would block.
        queue_max_messages=max(100_000, 2 * settings.max_in_flight),
        # Batches a backlog (fewer produce requests: less broker CPU per event); no
        # latency cost when caught up, as the sink's waits flush (KafkaEventSink.poll).
        linger_ms=RELAY_LINGER_MS,
        logger=_log,
        extra=extra,
    )

    def factory() -> EventSink:
        return KafkaEventSink(producer_settings)

    return factory


def build_relay(
    config: RelayConfig,
    settings: RelaySettings | None = None,
    *,
    source: OutboxSource | None = None,
    routes: Mapping[str, Route] | None = None,
    sink_factory: Callable[[], EventSink] | None = None,
) -> OutboxRelay:
    """Return a relay wired to PostgreSQL and Kafka (nothing connects until it runs).

    Each collaborator can be given; the defaults are a
    :class:`~adapters.postgres.outbox_relay.PgOutboxRelayStore` on
    ``config.database_url`` with the shared leader lock, :func:`relay_routes`
    with the writers' encoder, and :func:`kafka_sink_factory`.
    """
    settings = settings or RelaySettings()
    if source is None:
        source = PgOutboxRelayStore(config.database_url)
    if routes is None:
        topics = TopicNames(config.topic_prefix, retry_tiers=config.retry_tiers)
        routes = relay_routes(topics, bootstrap.outbox_value_encoder())
    if sink_factory is None:
        sink_factory = kafka_sink_factory(config, settings)
    return OutboxRelay(source, sink_factory, routes, settings)


def ensure_relay_topics(config: RelayConfig) -> None:
    """Create the pipeline's topics if missing (safe to run from several processes)."""
    admin = AdminClient(admin_config(config.bootstrap_servers, logger=_log))
    ensure_topics(
        admin,
        TopicNames(config.topic_prefix, retry_tiers=config.retry_tiers),
        config.partitions,
        config.replication_factor,
    )


def run_relay(
    config: RelayConfig,
    settings: RelaySettings | None = None,
    *,
    install_signal_handlers: bool = True,
    relay: OutboxRelay | None = None,
) -> RelayExit:
    """Run a relay until SIGTERM/SIGINT (or, with ``settings.drain``, until drained).

    Creates the topics first (``config.ensure_topics``). Signal handlers are
    installed only from the main thread and restored afterwards.
    """
    if config.ensure_topics:
        ensure_relay_topics(config)
    relay = relay or build_relay(config, settings)
    previous: dict[signal.Signals, Any] = {}
    if install_signal_handlers and threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            _log.info("Relay got %s: stopping", signal.Signals(signum).name)
            relay.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        return relay.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
