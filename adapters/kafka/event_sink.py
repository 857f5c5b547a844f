"""The relay's :class:`~domain.outbox_ports.EventSink` over confluent-kafka's ``Producer``."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from confluent_kafka import Producer

from adapters.kafka.errors import KafkaErrorInfo
from adapters.kafka.logs import ErrorReporter
from adapters.kafka.producer import UNCONFIRMED_DELIVERY
from domain.outbox_ports import Deliveries, Delivery, SinkBroken, SinkRejected

_log = logging.getLogger("orderflow.relay")


class KafkaEventSink:
    """:class:`~domain.outbox_ports.EventSink` straight over ``confluent_kafka.Producer``.

    The relay's hot path, so it does as little Python per message as it can: one
    ``produce`` call with the row's key (text), value (bytes) and headers (a dict,
    which the client encodes), and a ``functools.partial`` of one shared callback
    carrying the outbox id. Reports of acknowledged messages become plain ids
    appended to a list; only failures build a :class:`~domain.outbox_ports.Delivery`.
    Build it from :func:`~adapters.kafka.config.producer_config` (its ``error_cb``
    is what reveals a fatal producer error); ``client`` replaces the real producer
    in unit tests. Not thread-safe: the relay's main thread owns it.

    Like :class:`~adapters.kafka.producer.EventProducer`, it never drops silently:
    a message either raises :class:`~domain.outbox_ports.SinkRejected` from :meth:`send`
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
        if client is None:
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
        """Enqueue one message; refusals raise :class:`~domain.outbox_ports.SinkRejected`."""
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
        except Exception as exc:  # KafkaException and the client's other refusals
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
    return str(KafkaErrorInfo.from_exception(exc))
