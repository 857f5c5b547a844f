"""The producer and consumer contracts against the confluent-kafka adapters on a real broker.

Every test gets its own topics (deleted afterwards) and consumer groups; the
consumers are closed and the producers flushed before the topics go.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from adapters.kafka.config import consumer_config, producer_config
from adapters.kafka.consumer import EventConsumer
from adapters.kafka.producer import EventProducer
from adapters.kafka.topics import ensure_topics
from domain.messaging import MessageProducer
from tests.contract.messaging_contract import (
    Consumer,
    MessageConsumerContract,
    MessageProducerContract,
    MessagingWorld,
)
from tests.integration._pipeline import delete_topics

pytestmark = pytest.mark.integration


class KafkaWorld(MessagingWorld):
    @pytest.fixture(autouse=True)
    def _kafka(self, kafka_bootstrap_servers: str) -> Iterator[None]:
        self.servers = kafka_bootstrap_servers
        self.created: list[str] = []
        self.producers: list[EventProducer] = []
        self.consumers: list[EventConsumer] = []
        yield
        for consumer in self.consumers:
            consumer.close()
        for producer in self.producers:
            producer.close(10)
        if self.created:
            delete_topics(self.servers, self.created)

    def new_topic(self, partitions: int = 1) -> str:
        name = f"it-msg-{uuid.uuid4().hex[:12]}"
        ensure_topics(self.servers, [name], partitions, timeout=15)
        self.created.append(name)
        return name

    def make_producer(self) -> MessageProducer:
        producer = EventProducer(producer_config(self.servers, client_id="it-contract-producer"))
        self.producers.append(producer)
        return producer

    def make_consumer(self, group: str) -> Consumer:
        consumer = EventConsumer(
            consumer_config(
                self.servers,
                group_id=group,
                client_id="it-contract-consumer",
                # A short session: a member left behind by a failed test never stalls a join.
                session_timeout_ms=6_000,
                max_poll_interval_ms=10_000,
            )
        )
        self.consumers.append(consumer)
        return consumer


class TestEventProducer(KafkaWorld, MessageProducerContract):
    pass


class TestEventConsumer(KafkaWorld, MessageConsumerContract):
    pass
