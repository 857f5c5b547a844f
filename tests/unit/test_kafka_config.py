"""Client configs carry the delivery guarantees; librdkafka accepts every key we set."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from adapters.kafka.config import (
    CONSUMER_GUARANTEES,
    CONSUMER_LATENCY,
    PRODUCER_GUARANTEES,
    admin_config,
    consumer_config,
    producer_config,
)
from adapters.kafka.logs import ErrorReporter

BOOTSTRAP = "broker-a:9092,broker-b:9092"


def offline(config: dict[str, Any]) -> dict[str, Any]:
    """The config without bootstrap servers: librdkafka validates it but connects nowhere."""
    return {k: v for k, v in config.items() if k != "bootstrap.servers"}


def test_producer_guarantees() -> None:
    config = producer_config(BOOTSTRAP)
    assert config["bootstrap.servers"] == BOOTSTRAP
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["max.in.flight.requests.per.connection"] == 5
    assert config["partitioner"] == "murmur2_random"
    assert config["allow.auto.create.topics"] is False
    assert config["linger.ms"] == 5
    assert config["compression.type"] == "lz4"
    assert config["client.id"] == "orderflow-producer"
    assert isinstance(config["error_cb"], ErrorReporter)
    assert isinstance(config["logger"], logging.Logger)
    assert all(config[k] == v for k, v in PRODUCER_GUARANTEES.items())


def test_producer_tuning() -> None:
    config = producer_config(
        BOOTSTRAP,
        client_id="relay-1",
        linger_ms=0,
        batch_size=65536,
        compression="zstd",
        delivery_timeout_ms=30_000,
        extra={"statistics.interval.ms": 0},
    )
    assert config["client.id"] == "relay-1"
    assert config["linger.ms"] == 0
    assert config["batch.size"] == 65536
    assert config["compression.type"] == "zstd"
    assert config["message.timeout.ms"] == 30_000
    assert config["statistics.interval.ms"] == 0


@pytest.mark.parametrize(
    "override",
    [
        {"enable.idempotence": False},
        {"acks": 1},
        {"max.in.flight.requests.per.connection": 10},
        {"partitioner": "consistent_random"},
    ],
)
def test_producer_guarantees_cannot_be_overridden(override: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="delivery guarantees"):
        producer_config(BOOTSTRAP, extra=override)


def test_consumer_guarantees() -> None:
    config = consumer_config(BOOTSTRAP, group_id="orderflow-push", max_poll_interval_ms=600_000)
    assert config["group.id"] == "orderflow-push"
    assert config["enable.auto.commit"] is True
    assert config["enable.auto.offset.store"] is False
    assert config["auto.offset.reset"] == "earliest"
    assert config["partition.assignment.strategy"] == "cooperative-sticky"
    assert config["group.protocol"] == "classic"
    assert config["max.poll.interval.ms"] == 600_000
    assert config["client.id"] == "orderflow-consumer"
    assert callable(config["on_commit"])
    assert all(config[k] == v for k, v in CONSUMER_GUARANTEES.items())


@pytest.mark.parametrize(
    "override",
    [
        {"enable.auto.offset.store": True},
        {"auto.offset.reset": "latest"},
        {"partition.assignment.strategy": "range"},
    ],
)
def test_consumer_guarantees_cannot_be_overridden(override: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="delivery guarantees"):
        consumer_config(BOOTSTRAP, group_id="g", extra=override)


def test_consumer_argument_checks() -> None:
    with pytest.raises(ValueError, match="group_id"):
        consumer_config(BOOTSTRAP, group_id="")
    with pytest.raises(ValueError, match="max_poll_interval_ms"):
        consumer_config(BOOTSTRAP, group_id="g", max_poll_interval_ms=10_000)
    with pytest.raises(ValueError, match="bootstrap_servers"):
        consumer_config("", group_id="g")


def test_librdkafka_accepts_the_producer_config() -> None:
    # Constructing validates every property name and value (typos raise KafkaException);
    # builtin.features fails construction if this build lacks lz4 or zstd.
    Producer({**offline(producer_config(BOOTSTRAP)), "builtin.features": "lz4,zstd"})


def test_librdkafka_accepts_the_consumer_config() -> None:
    consumer = Consumer(offline(consumer_config(BOOTSTRAP, group_id="g")))
    consumer.close()


def test_librdkafka_accepts_the_admin_config() -> None:
    AdminClient(offline(admin_config(BOOTSTRAP)))


def test_configs_are_fresh_dicts() -> None:
    first = producer_config(BOOTSTRAP)
    first["acks"] = 0
    assert producer_config(BOOTSTRAP)["acks"] == "all"


@pytest.mark.parametrize(
    "config",
    [
        producer_config(BOOTSTRAP),
        consumer_config(BOOTSTRAP, group_id="g"),
        admin_config(BOOTSTRAP),
    ],
    ids=["producer", "consumer", "admin"],
)
def test_every_client_disables_nagle(config: dict[str, Any]) -> None:
    # Small pipelined requests must not wait for the peer's (delayed) ACK.
    assert config["socket.nagle.disable"] is True


def test_consumer_latency_settings() -> None:
    config = consumer_config(BOOTSTRAP, group_id="g")
    assert config["fetch.min.bytes"] == 1
    assert config["fetch.wait.max.ms"] == 100
    assert config["fetch.error.backoff.ms"] == 100
    assert all(config[k] == v for k, v in CONSUMER_LATENCY.items())
    assert consumer_config(BOOTSTRAP, group_id="g", fetch_wait_max_ms=20)["fetch.wait.max.ms"] == 20
    with pytest.raises(ValueError, match="fetch_wait_max_ms"):
        consumer_config(BOOTSTRAP, group_id="g", fetch_wait_max_ms=0)


def test_latency_settings_leave_the_producer_guarantees_alone() -> None:
    config = producer_config(BOOTSTRAP, linger_ms=0)
    assert (config["acks"], config["enable.idempotence"], config["linger.ms"]) == ("all", True, 0)
