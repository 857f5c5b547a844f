"""The producer and consumer contracts against the fakes, over one in-memory broker.

The last tests break a fake on purpose and check the contract notices: a
contract that cannot fail checks nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pytest

from adapters.kafka.consumer import ConsumedMessage
from domain.messaging import DeliveryOutcome, HeaderPairs, MessageProducer, Partition
from tests.contract.messaging_contract import (
    Consumer,
    MessageConsumerContract,
    MessageProducerContract,
    MessagingWorld,
)
from tests.messaging_fakes import FakeBroker, FakeConsumer, FakeProducer


class FakeWorld(MessagingWorld):
    settle_s = 0.0

    @pytest.fixture(autouse=True)
    def _broker(self) -> None:
        self.broker = FakeBroker()
        self.topics = 0

    def new_topic(self, partitions: int = 1) -> str:
        self.topics += 1
        return self.broker.create_topic(f"fake-{self.topics}", partitions)

    def make_producer(self) -> MessageProducer:
        return FakeProducer(self.broker)

    def make_consumer(self, group: str) -> Consumer:
        return FakeConsumer(self.broker, group)


class TestFakeProducer(FakeWorld, MessageProducerContract):
    pass


class TestFakeConsumer(FakeWorld, MessageConsumerContract):
    pass


# --- the contract catches broken implementations ---------------------------------------------
class HeaderDroppingProducer(FakeProducer):
    """Loses header pairs with a null value."""

    def produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        headers: HeaderPairs | None = None,
        on_delivery: Callable[[DeliveryOutcome], None] | None = None,
    ) -> None:
        kept = [(k, v) for k, v in headers or () if v is not None]
        super().produce(topic, key, value, kept, on_delivery)


class EagerProducer(FakeProducer):
    """Reports deliveries from ``produce`` itself."""

    def produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        headers: HeaderPairs | None = None,
        on_delivery: Callable[[DeliveryOutcome], None] | None = None,
    ) -> None:
        super().produce(topic, key, value, headers, on_delivery)
        self.poll()


class PauseIgnoringConsumer(FakeConsumer):
    """Keeps fetching paused partitions."""

    def pause(self, partitions: Iterable[Partition]) -> None:
        pass


class LowestOffsetConsumer(FakeConsumer):
    """Stores the offset of the last message given rather than the highest."""

    def store_offsets(self, messages: Iterable[ConsumedMessage]) -> bool:
        given = list(messages)
        stored = super().store_offsets(given)
        for message in given:
            self.to_commit[message.topic_partition] = message.next_offset
        return stored


class AlwaysStoringConsumer(FakeConsumer):
    """Claims to store offsets of partitions it no longer owns."""

    def store_offsets(self, messages: Iterable[ConsumedMessage]) -> bool:
        super().store_offsets(messages)
        return True


class Broken(FakeWorld):
    producer_class: type[FakeProducer] = FakeProducer
    consumer_class: type[FakeConsumer] = FakeConsumer

    def make_producer(self) -> MessageProducer:
        return self.producer_class(self.broker)

    def make_consumer(self, group: str) -> Consumer:
        return self.consumer_class(self.broker, group)


BROKEN: Sequence[tuple[str, type[FakeProducer], type[FakeConsumer], str]] = [
    (
        "null headers dropped",
        HeaderDroppingProducer,
        FakeConsumer,
        "test_a_record_arrives_with_its_key_value_and_header_pairs_intact",
    ),
    (
        "reports from produce",
        EagerProducer,
        FakeConsumer,
        "test_delivery_callbacks_run_only_inside_poll_and_flush_on_the_calling_thread",
    ),
    (
        "pause ignored",
        FakeProducer,
        PauseIgnoringConsumer,
        "test_pause_stops_one_partition_and_resume_restarts_it_where_it_stood",
    ),
    (
        "last offset stored, not the highest",
        FakeProducer,
        LowestOffsetConsumer,
        "test_the_group_resumes_right_after_the_highest_stored_and_committed_offset",
    ),
    (
        "revoked offsets accepted",
        FakeProducer,
        AlwaysStoringConsumer,
        "test_a_partition_taken_by_a_new_member_is_revoked_and_refuses_stored_offsets",
    ),
]


@pytest.mark.parametrize(
    ("why", "producer", "consumer", "test"), BROKEN, ids=[b[0] for b in BROKEN]
)
def test_the_contract_fails_a_broken_fake(
    why: str, producer: type[FakeProducer], consumer: type[FakeConsumer], test: str
) -> None:
    world = type("World", (Broken, MessageProducerContract, MessageConsumerContract), {})()
    world.broker, world.topics = FakeBroker(), 0
    world.producer_class, world.consumer_class = producer, consumer
    with pytest.raises(AssertionError):
        getattr(world, test)()
