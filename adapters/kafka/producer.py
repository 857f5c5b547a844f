"""``EventProducer``: a thin, typed wrapper over ``confluent_kafka.Producer``.

What it adds to the raw client:

* delivery reports as a typed :class:`DeliveryReport` carrying the caller's
  ``opaque`` (e.g. the outbox row id), so the relay marks exactly what the
  broker acknowledged;
* a full local queue (``BufferError``) is handled by serving delivery reports
  and retrying for a bounded time, then :class:`ProducerQueueFullError`;
* never a silent drop: every message either raises from :meth:`produce` (not
  enqueued, the caller still owns it) or gets exactly one delivery report; a
  failed report with no callback to receive it is logged at ERROR and counted.

Callbacks run inside :meth:`poll` / :meth:`flush` / :meth:`produce` on the
calling thread; an exception raised by a callback propagates from that call
(librdkafka keeps the remaining reports queued for the next poll).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from adapters.kafka.errors import KafkaErrorInfo, ProduceError, ProducerQueueFullError
from adapters.kafka.headers import EventHeaders, build_headers
from adapters.kafka.logs import ErrorReporter

_log = logging.getLogger(__name__)

HeadersArg = (
    EventHeaders
    | Sequence[tuple[str, bytes | str | None]]
    | Mapping[str, bytes | str | None]
    | None
)


@dataclass(frozen=True)
class DeliveryReport:
    """The broker's verdict on one produced message.

    ``offset`` and ``partition`` are -1 when delivery failed before a partition
    was chosen or an offset assigned. ``opaque`` is whatever the caller passed
    to :meth:`EventProducer.produce`.
    """

    topic: str
    partition: int
    offset: int
    error: KafkaErrorInfo | None
    opaque: object = field(default=None, compare=False)
    key: bytes | None = None

    @property
    def ok(self) -> bool:
        """True when the broker acknowledged the message (acks=all)."""
        return self.error is None


DeliveryCallback = Callable[[DeliveryReport], None]

#: The error of a report librdkafka gave as a success but without the record's offset.
UNCONFIRMED_DELIVERY = KafkaErrorInfo(
    KafkaError._FAIL,
    "UNCONFIRMED_DELIVERY",
    "acknowledged without an offset: not known to be stored",
    retriable=True,
)


class EventProducer:
    """Produce pipeline events with typed delivery reports and bounded back-pressure.

    Build it from :func:`~adapters.kafka.config.producer_config` (the idempotent
    settings); ``client`` replaces the real ``confluent_kafka.Producer`` (unit
    tests pass a fake with the same methods). ``on_delivery`` is the default
    callback for messages produced without their own. The underlying client is
    thread-safe; the wrapper's counters are lock-guarded because reports run on
    whichever thread polls.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        client: Producer | None = None,
        on_delivery: DeliveryCallback | None = None,
        queue_full_timeout: float = 30.0,
        queue_full_poll: float = 0.05,
    ) -> None:
        if client is None:
            if config is None:
                raise ValueError("Pass a producer config (or a client)")
            client = Producer(dict(config))
        self._client = client
        self._default_on_delivery = on_delivery
        self._queue_full_timeout = queue_full_timeout
        self._queue_full_poll = queue_full_poll
        self._lock = threading.Lock()
        self._in_flight = 0
        self._failed_unhandled = 0
        # The ErrorReporter from producer_config() remembers fatal errors (e.g. an
        # idempotence sequence gap); expose it so the relay can rebuild the producer.
        error_cb = (config or {}).get("error_cb")
        self._reporter = error_cb if isinstance(error_cb, ErrorReporter) else None

    # --- producing ------------------------------------------------------------------------
    def produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        headers: HeadersArg = None,
        on_delivery: DeliveryCallback | None = None,
        *,
        opaque: object = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Enqueue one message; its :class:`DeliveryReport` arrives via ``on_delivery``.

        Waits (serving delivery reports) while the local queue is full, for at
        most ``queue_full_timeout`` seconds, then raises
        :class:`ProducerQueueFullError`. Other refusals (message too large,
        fatal producer state, ...) raise :class:`ProduceError`. In both cases the
        message was not enqueued and no report will come.
        """
        callback = on_delivery or self._default_on_delivery
        key_bytes = key.encode("utf-8") if isinstance(key, str) else key
        kwargs: dict[str, Any] = {
            "key": key_bytes,
            "value": value,
            "on_delivery": self._make_callback(callback, opaque, key_bytes),
        }
        kafka_headers = _kafka_headers(headers)
        if kafka_headers:
            kwargs["headers"] = kafka_headers
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms

        deadline = time.monotonic() + self._queue_full_timeout
        while True:
            try:
                self._client.produce(topic, **kwargs)
                break
            except BufferError:
                # The local queue is full: serve delivery reports to make room. This is
                # the back-pressure that keeps the relay's memory bounded.
                if time.monotonic() >= deadline:
                    raise ProducerQueueFullError(
                        "produce",
                        KafkaErrorInfo(
                            KafkaError._QUEUE_FULL,
                            "_QUEUE_FULL",
                            f"local queue still full after {self._queue_full_timeout}s",
                            retriable=True,
                        ),
                    ) from None
                self._client.poll(self._queue_full_poll)
            except KafkaException as exc:
                raise ProduceError("produce", KafkaErrorInfo.from_exception(exc)) from exc
        with self._lock:
            self._in_flight += 1

    def _make_callback(
        self, callback: DeliveryCallback | None, opaque: object, key: bytes | None
    ) -> Callable[[KafkaError | None, Message], None]:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            report = _report(err, msg, opaque, key)
            with self._lock:
                self._in_flight -= 1
                if callback is None and not report.ok:
                    self._failed_unhandled += 1
            if callback is not None:
                callback(report)
            elif not report.ok:
                # Nobody is listening for this report: say so loudly rather than lose it.
                _log.error(
                    "Kafka delivery to %s failed and no callback was set: %s",
                    report.topic,
                    report.error,
                )

        return delivered

    # --- serving --------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports (and error/log callbacks); return how many events were served."""
        return self._client.poll(timeout)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` s for every queued message's report; return how many remain."""
        return self._client.flush(timeout)

    def close(self, timeout: float = 30.0) -> int:
        """Flush before dropping the producer; log (not hide) messages left undelivered."""
        remaining = self.flush(timeout)
        if remaining:
            _log.error("Kafka producer closed with %d message(s) not yet acknowledged", remaining)
        return remaining

    # --- state ----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Messages queued locally or in flight to the broker (librdkafka's count)."""
        return len(self._client)

    @property
    def in_flight(self) -> int:
        """Messages produced through this wrapper whose delivery report has not run yet."""
        with self._lock:
            return self._in_flight

    @property
    def failed_without_callback(self) -> int:
        """Failed deliveries that had no callback (each was logged at ERROR)."""
        with self._lock:
            return self._failed_unhandled

    @property
    def fatal_error(self) -> KafkaErrorInfo | None:
        """The fatal error reported by librdkafka, if any: the producer must be recreated."""
        return self._reporter.fatal_error if self._reporter is not None else None


def _kafka_headers(headers: HeadersArg) -> list[tuple[str, bytes | None]] | None:
    if headers is None:
        return None
    if isinstance(headers, EventHeaders):
        return list(build_headers(headers))
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(k, v.encode("utf-8") if isinstance(v, str) else v) for k, v in pairs]


def _report(
    err: KafkaError | None, msg: Message | None, opaque: object, key: bytes | None
) -> DeliveryReport:
    topic = msg.topic() if msg is not None else None
    partition = msg.partition() if msg is not None else None
    offset = msg.offset() if msg is not None else None
    known = offset is not None and offset >= 0
    error = KafkaErrorInfo.from_kafka_error(err) if err is not None else None
    if error is None and not known:
        # Seen on real brokers right after a topic was created: "delivered", no offset,
        # and the record is not in the log. Without an offset nothing proves the broker
        # stored it, so it is not counted as delivered (the caller re-sends: at worst a
        # duplicate, never a loss).
        error = UNCONFIRMED_DELIVERY
    return DeliveryReport(
        topic=topic or "",
        partition=partition if partition is not None else -1,
        offset=offset if known and offset is not None else -1,
        error=error,
        opaque=opaque,
        key=key,
    )
