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
import time
from collections.abc import Callable, Mapping
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING, Any

from domain.events import EVENT_PUSH_REQUESTED, EVENT_PUSH_RESULT
from domain.records import OutboxEvent
from producer.relay import (
    Deliveries,
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
    from adapters.kafka.topics import TopicNames

_log = logging.getLogger("orderflow.relay")

#: Which topic each outbox ``event_type`` is published to. Add a line per new event type.
EVENT_TOPICS: Mapping[str, Callable[[TopicNames], str]] = {
    EVENT_PUSH_REQUESTED: lambda topics: topics.requests,
    EVENT_PUSH_RESULT: lambda topics: topics.results,
}

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


class KafkaEventSink:
    """:class:`~producer.relay.EventSink` straight over ``confluent_kafka.Producer``.

    The relay's hot path, so it does as little Python per message as it can: one
    ``produce`` call with the row's key (text), value (bytes) and headers (a dict,
    which the client encodes), and a ``functools.partial`` of one shared callback
    carrying the outbox id. Reports of acknowledged messages become plain ids
    appended to a list; only failures build a :class:`~producer.relay.Delivery`.
    Build it from :func:`~adapters.kafka.config.producer_config` (its ``error_cb``
    is what reveals a fatal producer error); ``client`` replaces the real producer
    in unit tests. Not thread-safe: the relay's main thread owns it.

    Like :class:`~adapters.kafka.producer.EventProducer`, it never drops silently:
    a message either raises :class:`~producer.relay.SinkRejected` from :meth:`send`
    or gets exactly one report; a report "delivered" without an offset is not
    proof that the broker stored it, so it counts as failed (re-sent).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        client: Any = None,
        queue_full_timeout: float = 30.0,
        queue_full_poll: float = 0.05,
    ) -> None:
        from adapters.kafka.errors import KafkaErrorInfo
        from adapters.kafka.logs import ErrorReporter
        from adapters.kafka.producer import UNCONFIRMED_DELIVERY

        if client is None:
            from confluent_kafka import Producer

            client = Producer(dict(config))
        self._client = client
        self._produce = client.produce
        error_cb = config.get("error_cb")
        self._reporter = error_cb if isinstance(error_cb, ErrorReporter) else None
        self._queue_full_timeout = queue_full_timeout
        self._queue_full_poll = queue_full_poll
        self._acked: list[int] = []
        self._failed: list[Delivery] = []
        acked = self._acked.append
        failed = self._failed.append

        def delivered(token: int, err: Any, msg: Any) -> None:
            # The only Python run per acknowledged message: keep it this small.
            if err is None and msg.offset() >= 0:
                acked(token)
            elif err is None:
                # Seen on real brokers right after a topic was created: "delivered",
                # no offset, and the record not in the log. Re-sent, never lost.
                failed(Delivery(token, False, UNCONFIRMED_DELIVERY.name))
            else:
                failed(Delivery(token, False, str(KafkaErrorInfo.from_kafka_error(err))))

        self._delivered = delivered

    def send(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str], token: int
    ) -> None:
        """Enqueue one message; refusals raise :class:`~producer.relay.SinkRejected`."""
        try:
            self._produce(
                topic, value, key, headers=headers, on_delivery=partial(self._delivered, token)
            )
        except BufferError:
            self._send_when_room(topic, key, value, headers, token)
        except (TypeError, ValueError) as exc:
            text = _text_headers(headers)
            if text is None:
                # Not a mapping, or text already: a poison event, not a crash.
                raise SinkRejected(f"{type(exc).__name__}: {exc}") from exc
            # Header values that are not text (numbers, null) go as their text, as the
            # relay always sent them.
            self.send(topic, key, value, text, token)
        except Exception as exc:  # KafkaException (not imported here: see the module doc)
            self._check_fatal()
            raise SinkRejected(_kafka_reason(exc)) from exc

    def _send_when_room(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str], token: int
    ) -> None:
        """The local queue is full: serve reports to make room, for a bounded time."""
        deadline = time.monotonic() + self._queue_full_timeout
        while True:
            self._client.poll(self._queue_full_poll)
            try:
                self._produce(
                    topic, value, key, headers=headers, on_delivery=partial(self._delivered, token)
                )
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise SinkRejected(
                        f"local queue still full after {self._queue_full_timeout}s"
                    ) from None
            except Exception as exc:
                self._check_fatal()
                raise SinkRejected(_kafka_reason(exc)) from exc

    def _take(self) -> Deliveries:
        taken = Deliveries(self._acked[:], self._failed[:])
        # Cleared in place: the delivery callback holds these lists' append methods.
        self._acked.clear()
        self._failed.clear()
        return taken

    def _check_fatal(self) -> None:
        fatal = self._reporter.fatal_error if self._reporter is not None else None
        if fatal is not None:
            raise SinkBroken(str(fatal))

    def poll(self, timeout: float) -> Deliveries:
        """Serve delivery reports (waiting up to ``timeout`` s) and return them.

        The relay only waits (``timeout > 0``) when it has nothing to do until
        acknowledgements come (caught up, or window full): then lingering messages
        go at once, as ``flush`` ignores ``linger.ms`` while it runs. So the linger
        that batches a backlog (fewer, larger produce requests: less broker CPU per
        event) adds no latency to a caught-up relay's events.
        """
        if timeout > 0:
            self._client.flush(timeout)
        else:
            self._client.poll(0)
        if not self._acked and not self._failed:
            self._check_fatal()
        return self._take()

    def flush(self, timeout: float) -> Deliveries:
        """Wait up to ``timeout`` s for outstanding reports and return them."""
        self._client.flush(timeout)
        if not self._acked and not self._failed:
            self._check_fatal()
        return self._take()

    def close(self) -> None:
        """Drop the producer; the relay flushed what it could before."""
        remaining = len(self._client)
        if remaining:
            _log.warning("Dropping a Kafka producer with %d message(s) outstanding", remaining)


def _text_headers(headers: object) -> dict[str, str] | None:
    """``headers`` with every key and value as text; None if impossible or already so."""
    if not isinstance(headers, Mapping):
        return None
    if all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        return None
    return {str(k): str(v) for k, v in headers.items()}


def _kafka_reason(exc: BaseException) -> str:
    """``NAME: reason`` of the KafkaError a KafkaException carries (else the exception)."""
    from adapters.kafka.errors import KafkaErrorInfo

    return str(KafkaErrorInfo.from_exception(exc))


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
