"""Error callback and log filter: informative once, then quiet."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, TopicPartition

from adapters.kafka.errors import KafkaErrorInfo
from adapters.kafka.logs import ErrorReporter, RateLimitFilter, commit_reporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_same_code_logged_once_per_interval(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    reporter = ErrorReporter(logging.getLogger("t.kafka"), interval=30, clock=clock)
    down = KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")
    with caplog.at_level(logging.INFO, "t.kafka"):
        for _ in range(50):
            reporter(down)
        clock.now += 10
        reporter(down)
        assert len(caplog.records) == 1
        clock.now += 25
        reporter(down)
    assert len(caplog.records) == 2
    assert "50 similar suppressed" in caplog.records[1].getMessage()
    assert caplog.records[0].levelno == logging.WARNING


def test_distinct_codes_are_logged_separately(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    reporter = ErrorReporter(logging.getLogger("t.kafka"), clock=clock)
    with caplog.at_level(logging.INFO, "t.kafka"):
        reporter(KafkaError(KafkaError._TRANSPORT, "down"))
        reporter(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"))
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.ERROR]


def test_fatal_errors_are_always_logged_and_remembered(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    reporter = ErrorReporter(logging.getLogger("t.kafka"), clock=clock)
    assert reporter.fatal_error is None
    first = KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "gap", fatal=True)
    with caplog.at_level(logging.INFO, "t.kafka"):
        reporter(first)
        reporter(KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "fenced", fatal=True))
    assert [r.levelno for r in caplog.records] == [logging.CRITICAL, logging.CRITICAL]
    assert reporter.fatal_error == KafkaErrorInfo.from_kafka_error(first)


def test_commit_reporter(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    reporter = ErrorReporter(logging.getLogger("t.kafka"), clock=clock)
    on_commit = commit_reporter(reporter)
    with caplog.at_level(logging.INFO, "t.kafka"):
        on_commit(KafkaError(KafkaError._NO_OFFSET), [])
        on_commit(None, [TopicPartition("t", 0, 5)])
        assert caplog.records == []
        on_commit(KafkaError(KafkaError.REBALANCE_IN_PROGRESS, "rebalancing"), [])
    assert len(caplog.records) == 1
    assert "REBALANCE_IN_PROGRESS" in caplog.records[0].getMessage()


def test_rate_limit_filter(clock: Clock) -> None:
    limit = RateLimitFilter(interval=30, clock=clock)

    def record(text: str) -> logging.LogRecord:
        return logging.LogRecord(
            "x", logging.WARNING, __file__, 1, "%s [%s] %s", ("FAIL", "p", text), None
        )

    assert limit.filter(record("connection refused"))
    assert not limit.filter(record("connection refused"))
    assert limit.filter(record("other"))
    clock.now += 31
    assert limit.filter(record("connection refused"))
