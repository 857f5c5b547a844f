"""Wiring of the standalone relay: the Kafka sink, the routes and :func:`build_relay`.

This is the relay's composition root (the ``python -m producer.relay`` process
and the ``orderflow relay`` command call :func:`run_relay`). Adapters are
imported inside the functions, so importing this module connects to nothing
and drags in neither confluent-kafka nor fastavro.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

from domain.records import EVENT_PUSH_REQUESTED, OutboxEvent
from producer.relay import (
    Delivery,
    EventSink,
    OutboxRelay,
    OutboxSource,
    RelayConfig,
    RelayExit,
    RelaySettings,
    Route,
    SinkBroken,
    SinkRejected,
)

if TYPE_CHECKING:
    from adapters.avro.codec import AvroCodec
    from adapters.kafka.producer import DeliveryReport, EventProducer
    from adapters.kafka.topics import TopicNames

_log = logging.getLogger("orderflow.relay")

#: ``event_type`` of the push outcome events the consumer writes to the outbox.
EVENT_PUSH_RESULT = "PushResult"

#: Which topic each outbox ``event_type`` is published to. Add a line per new event type.
EVENT_TOPICS: Mapping[str, Callable[[TopicNames], str]] = {
    EVENT_PUSH_REQUESTED: lambda topics: topics.requests,
    EVENT_PUSH_RESULT: lambda topics: topics.results,
}

#: ``linger.ms`` of the relay's producer (the library default of this project is 5).
RELAY_LINGER_MS = 1

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


class KafkaEventSink:
    """:class:`~producer.relay.EventSink` over :class:`~adapters.kafka.producer.EventProducer`."""

    def __init__(self, producer: EventProducer) -> None:
        self._producer = producer
        self._reports: list[Delivery] = []

    def _on_delivery(self, report: DeliveryReport) -> None:
        token = report.opaque
        assert isinstance(token, int)
        self._reports.append(Delivery(token, report.ok, None if report.ok else str(report.error)))

    def send(
        self, topic: str, key: bytes, value: bytes, headers: Mapping[str, str], token: int
    ) -> None:
        """Enqueue one message; refusals raise :class:`~producer.relay.SinkRejected`."""
        from adapters.kafka.errors import ProduceError

        try:
            # EventProducer turns the str values into UTF-8 header bytes.
            self._producer.produce(topic, key, value, headers, self._on_delivery, opaque=token)
        except ProduceError as exc:
            self._check_fatal()
            raise SinkRejected(str(exc)) from exc

    def _take(self) -> list[Delivery]:
        reports, self._reports = self._reports, []
        return reports

    def _check_fatal(self) -> None:
        fatal = self._producer.fatal_error
        if fatal is not None:
            raise SinkBroken(str(fatal))

    def poll(self, timeout: float) -> list[Delivery]:
        """Serve delivery reports (waiting up to ``timeout`` s) and return them."""
        self._producer.poll(timeout)
        if not self._reports:
            self._check_fatal()
        return self._take()

    def flush(self, timeout: float) -> list[Delivery]:
        """Wait up to ``timeout`` s for outstanding reports and return them."""
        self._producer.flush(timeout)
        if not self._reports:
            self._check_fatal()
        return self._take()

    def close(self) -> None:
        """Drop the producer; the relay flushed what it could before."""
        remaining = len(self._producer)
        if remaining:
            _log.warning("Dropping a Kafka producer with %d message(s) outstanding", remaining)


def event_encoder(
    event_type: str, codec: AvroCodec | None = None
) -> Callable[[OutboxEvent], bytes] | None:
    """How an outbox event of ``event_type`` becomes its Kafka value (``None``: no route).

    :data:`EVENT_TOPICS` are Avro (``codec``, default the shared validating codec of
    ``schemas/``); the push worker's retry-tier and DLQ records have their own encoders.
    The one lookup behind both the relay's routes and the writers' encoder.
    """
    if event_type in EVENT_TOPICS:
        from adapters.avro.records import encode_outbox_event

        return lambda event: encode_outbox_event(event, codec)
    from consumer.outbox_events import outcome_encoder

    return outcome_encoder(event_type)


def outbox_value_encoder(codec: AvroCodec | None = None) -> Callable[[OutboxEvent], bytes | None]:
    """Encode an outbox event's Kafka value as the relay's routes would (for writers).

    Writers store the value with the event, so the relay only moves bytes. Returns
    ``None`` for an event type no route knows (the relay then refuses it, logged).
    """
    # Resolved now, not per event: it imports the Avro adapter here, in the thread that
    # builds the unit of work, and never first from two threads at once (a lazy first
    # import racing a reader thread's import of adapters.avro failed half-initialised).
    avro = {name: event_encoder(name, codec) for name in EVENT_TOPICS}

    def encode(event: OutboxEvent) -> bytes | None:
        encoder = avro.get(event.event_type) or event_encoder(event.event_type, codec)
        return None if encoder is None else encoder(event)

    return encode


def default_routes(topics: TopicNames, codec: AvroCodec | None = None) -> dict[str, Route]:
    """Routes for :data:`EVENT_TOPICS` and the push worker's records (see :func:`event_encoder`).

    ``codec`` (used for :data:`EVENT_TOPICS`) defaults to the shared validating codec
    of ``schemas/``; a benchmark or a tuned deployment may pass another (e.g.
    ``AvroCodec.from_schemas(validate=False)``, about a quarter cheaper per event).
    """
    from consumer.outbox_events import outcome_routes

    routes: dict[str, Route] = {}
    for name, topic in EVENT_TOPICS.items():
        encoder = event_encoder(name, codec)
        assert encoder is not None  # every EVENT_TOPICS type has one
        routes[name] = Route(topic(topics), encoder)
    # The push worker's retry-tier and DLQ records (own encoders, topic per tier).
    routes.update({name: Route(t, enc) for name, (t, enc) in outcome_routes(topics).items()})
    return routes


def kafka_sink_factory(
    config: RelayConfig, settings: RelaySettings | None = None
) -> Callable[[], EventSink]:
    r"""Return a factory of idempotent :class:`KafkaEventSink`\ s for ``config``."""
    from adapters.kafka.config import producer_config
    from adapters.kafka.producer import EventProducer

    settings = settings or RelaySettings()
    extra = {**RELAY_PRODUCER_EXTRA, **(config.producer_extra or {})}
    producer_settings = producer_config(
        config.bootstrap_servers,
        client_id=config.client_id,
        # The local queue must hold the whole window, or produce() would block.
        queue_max_messages=max(100_000, 2 * settings.max_in_flight),
        # Every event crosses the relay twice on its way (request, then result), so
        # linger counts double in the approval -> result latency. Under load batches
        # still fill while earlier requests are in flight; 1 ms only spares idle time.
        linger_ms=RELAY_LINGER_MS,
        logger=_log,
        extra=extra,
    )

    def factory() -> EventSink:
        return KafkaEventSink(EventProducer(producer_settings))

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
    ``config.database_url`` with the shared leader lock, :func:`default_routes`
    and :func:`kafka_sink_factory`.
    """
    from adapters.kafka.topics import TopicNames
    from adapters.postgres.outbox_relay import PgOutboxRelayStore

    settings = settings or RelaySettings()
    if source is None:
        source = PgOutboxRelayStore(config.database_url)
    if routes is None:
        routes = default_routes(TopicNames(config.topic_prefix, retry_tiers=config.retry_tiers))
    if sink_factory is None:
        sink_factory = kafka_sink_factory(config, settings)
    return OutboxRelay(source, sink_factory, routes, settings)


def ensure_relay_topics(config: RelayConfig) -> None:
    """Create the pipeline's topics if missing (safe to run from several processes)."""
    from confluent_kafka.admin import AdminClient

    from adapters.kafka.config import admin_config
    from adapters.kafka.topics import TopicNames, ensure_topics

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
