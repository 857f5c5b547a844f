"""Quiet, useful logging for librdkafka's error callback and log lines.

librdkafka reports the same condition over and over while it lasts (a broker
down is reported on every reconnect attempt, per client); at INFO/WARNING that
buries everything else. :class:`ErrorReporter` logs each error code once per
``interval`` with a count of what it suppressed, and always logs fatal errors
(and remembers the first, so a producer can stop). :class:`RateLimitFilter` does
the same for librdkafka's own log lines routed through a Python logger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, TopicPartition

from adapters.kafka.errors import KafkaErrorInfo

#: Logger name under which librdkafka's own log lines arrive.
LIBRDKAFKA_LOGGER = "adapters.kafka.librdkafka"


class ErrorReporter:
    """An ``error_cb`` for confluent-kafka that logs each error code at most once per interval.

    Thread-safe (librdkafka may call it from the thread that polls, and several
    clients may share one reporter).
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger or logging.getLogger("adapters.kafka")
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        # code -> (time of last log line, occurrences suppressed since)
        self._seen: dict[int, tuple[float, int]] = {}
        self._fatal: KafkaErrorInfo | None = None

    @property
    def fatal_error(self) -> KafkaErrorInfo | None:
        """The first fatal error reported (the client must be recreated), else None."""
        return self._fatal

    def __call__(self, err: KafkaError) -> None:
        """Entry point for librdkafka: ``err`` is a ``confluent_kafka.KafkaError``."""
        self.report(KafkaErrorInfo.from_kafka_error(err))

    def report(self, info: KafkaErrorInfo) -> None:
        """Log ``info`` unless the same code was logged less than ``interval`` ago."""
        if info.fatal:
            with self._lock:
                if self._fatal is None:
                    self._fatal = info
            self._logger.critical("Kafka fatal error (client must be recreated): %s", info)
            return
        now = self._clock()
        with self._lock:
            last, suppressed = self._seen.get(info.code, (None, 0))
            if last is not None and now - last < self._interval:
                self._seen[info.code] = (last, suppressed + 1)
                return
            self._seen[info.code] = (now, 0)
        more = f" ({suppressed} similar suppressed)" if suppressed else ""
        # Transport/broker-down errors are retried by librdkafka itself: a warning, not an error.
        level = logging.WARNING if info.retriable or info.code < 0 else logging.ERROR
        self._logger.log(level, "Kafka error: %s%s", info, more)


def commit_reporter(
    reporter: ErrorReporter,
) -> Callable[[KafkaError | None, list[TopicPartition]], None]:
    """Return an ``on_commit`` callback that reports failed (auto or async) commits.

    Without it a failing background commit is invisible: librdkafka does not
    route commit results through ``error_cb``.
    """

    def on_commit(err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None:
            # _NO_OFFSET just means nothing was stored since the last commit.
            if err.code() != KafkaError._NO_OFFSET:
                reporter(err)
            return
        for tp in partitions:
            if tp.error is not None:
                reporter(tp.error)

    return on_commit


class RateLimitFilter(logging.Filter):
    """A logging filter that lets an identical message through at most once per interval."""

    def __init__(
        self, interval: float = 30.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for a repeat of a message logged less than ``interval`` ago."""
        text = record.getMessage()
        now = self._clock()
        with self._lock:
            last = self._last.get(text)
            if last is not None and now - last < self._interval:
                return False
            if len(self._last) > 1000:
                # Bound memory: forget entries old enough to be allowed through anyway.
                self._last = {k: t for k, t in self._last.items() if now - t < self._interval}
            self._last[text] = now
        return True


def librdkafka_logger(interval: float = 30.0) -> logging.Logger:
    """Return the logger to pass as confluent-kafka's ``logger`` config, rate-limited once.

    With a Python logger configured, librdkafka's log lines are queued and
    emitted from ``poll()``/``consume()`` on the application's thread instead of
    being printed to stderr by librdkafka's own thread.
    """
    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
        logger.addFilter(RateLimitFilter(interval))
    return logger
