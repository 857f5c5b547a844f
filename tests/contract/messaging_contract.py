"""The contracts of ``domain.messaging.MessageProducer`` and ``MessageConsumer``.

A subclass gives a world to run them in: :meth:`MessagingWorld.new_topic`
(a fresh, empty topic), :meth:`MessagingWorld.make_producer` and
:meth:`MessagingWorld.make_consumer` (a member of a consumer group that
starts from the earliest offset where the group committed nothing), all on
the same broker. The fakes of ``tests/messaging_fakes.py`` (tests/unit) and
the confluent-kafka adapters on the real broker (tests/integration) both run
them.

Only what the worker relies on is asserted, and only what both honestly do:
e.g. a producer's ``poll`` count is only checked to be positive when it ran
callbacks (librdkafka counts events, and one event may carry many reports).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from domain.messaging import (
    DeliveryOutcome,
    HeaderPairs,
    InboundMessage,
    MessageConsumer,
    MessageProducer,
    Partition,
)

#: Longest a contract test waits for a condition (joins, deliveries, fetches).
WAIT_S = 30.0
#: Keys spread over the partitions of a topic: fixed, so a partitioner places them the
#: same way on every run (each test checks the spread it needs actually happened).
KEYS = tuple(f"order-{n}".encode() for n in range(16))

Consumer = MessageConsumer[Any]


class MessagingWorld:
    """What a subclass gives: topics, producers and consumers on one broker."""

    #: How long "nothing more arrives" is watched for (a fake needs no time).
    settle_s: float = 1.0

    def new_topic(self, partitions: int = 1) -> str:
        """A new empty topic with ``partitions`` partitions (removed after the test)."""
        raise NotImplementedError

    def make_producer(self) -> MessageProducer:
        """A new producer (flushed and dropped after the test)."""
        raise NotImplementedError

    def make_consumer(self, group: str) -> Consumer:
        """A new member of ``group`` (closed after the test if the test did not)."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------
    def new_group(self) -> str:
        """A consumer group nobody used yet."""
        return f"contract-{uuid.uuid4().hex[:12]}"

    def produce_all(
        self,
        producer: MessageProducer,
        topic: str,
        records: Sequence[tuple[bytes | str | None, bytes | None]],
        headers: HeaderPairs | None = None,
    ) -> list[DeliveryOutcome]:
        """Produce ``records`` (key, value) and flush; every delivery must be ok."""
        outcomes: list[DeliveryOutcome] = []
        for key, value in records:
            producer.produce(topic, key, value, headers, on_delivery=outcomes.append)
        assert producer.flush(WAIT_S) == 0
        assert len(outcomes) == len(records)
        assert [o.ok for o in outcomes] == [True] * len(records), [o.error for o in outcomes]
        return outcomes

    def consume(
        self,
        consumer: Consumer,
        count: int,
        *,
        max_messages: int = 500,
    ) -> list[InboundMessage]:
        """Poll until ``count`` records arrived, then ``settle_s`` more: exactly ``count``."""
        received: list[InboundMessage] = []
        deadline = time.monotonic() + WAIT_S
        while len(received) < count:
            assert time.monotonic() < deadline, f"got {len(received)} of {count} records"
            batch = consumer.poll_batch(max_messages, 0.1)
            assert len(batch) <= max_messages
            received += batch
        received += self.drain(consumer)
        assert len(received) == count, [(m.partition, m.offset) for m in received]
        return received

    def drain(self, consumer: Consumer) -> list[InboundMessage]:
        """Whatever arrives within ``settle_s`` (at least one poll)."""
        received = list(consumer.poll_batch(500, 0.0))
        deadline = time.monotonic() + self.settle_s
        while time.monotonic() < deadline:
            received += consumer.poll_batch(500, 0.1)
        return received

    def wait_for(self, condition: Callable[[], bool], *consumers: Consumer) -> None:
        """Poll ``consumers`` (they must receive nothing meanwhile) until ``condition``."""
        deadline = time.monotonic() + WAIT_S
        while not condition():
            assert time.monotonic() < deadline, "condition not reached"
            for consumer in consumers:
                assert list(consumer.poll_batch(1, 0.1)) == []

    def spread(self, messages: Sequence[InboundMessage]) -> dict[int, list[InboundMessage]]:
        """``messages`` by partition, each list in arrival order."""
        out: dict[int, list[InboundMessage]] = {}
        for message in messages:
            out.setdefault(message.partition, []).append(message)
        return out


class MessageProducerContract(MessagingWorld):
    """Tests every ``MessageProducer`` must pass (read back through a consumer)."""

    def test_a_record_arrives_with_its_key_value_and_header_pairs_intact(self) -> None:
        topic = self.new_topic()
        producer = self.make_producer()
        headers = [
            ("event_id", b"e-1"),
            ("x-null", None),
            ("dup", b"first"),
            ("dup", b"second"),
            ("bin", b"\xff\x00\xfe"),
        ]
        (outcome,) = self.produce_all(producer, topic, [(b"order-1", b"\x00value\xff")], headers)
        assert outcome.error is None
        consumer = self.make_consumer(self.new_group())
        consumer.subscribe([topic])
        (message,) = self.consume(consumer, 1)
        assert (message.topic, message.partition, message.offset) == (topic, 0, 0)
        assert (message.key, message.value) == (b"order-1", b"\x00value\xff")
        # Order, duplicates and null values kept: the codec parses these pairs strictly.
        assert message.header_items == tuple(headers)
        consumer.close()

    def test_a_text_key_arrives_as_utf8_and_a_tombstone_without_headers(self) -> None:
        topic = self.new_topic()
        producer = self.make_producer()
        self.produce_all(producer, topic, [("ordre-\u00e9", None), (None, b"no key")])
        consumer = self.make_consumer(self.new_group())
        consumer.subscribe([topic])
        first, second = sorted(self.consume(consumer, 2), key=lambda m: m.offset)
        assert (first.key, first.value, first.header_items) == ("ordre-é".encode(), None, ())
        assert (second.key, second.value, second.header_items) == (None, b"no key", ())
        consumer.close()

    def test_delivery_callbacks_run_only_inside_poll_and_flush_on_the_calling_thread(
        self,
    ) -> None:
        topic = self.new_topic()
        producer = self.make_producer()
        inside = {"poll": False, "flush": False}
        seen: list[tuple[int, str, bool, int]] = []

        def on_delivery(token: int) -> Callable[[DeliveryOutcome], None]:
            def record(outcome: DeliveryOutcome) -> None:
                where = next((name for name, now in inside.items() if now), "outside")
                seen.append((token, where, outcome.ok, threading.get_ident()))

            return record

        for token in (1, 2, 3):
            producer.produce(topic, b"k", b"v%d" % token, None, on_delivery(token))
        assert seen == []  # produce only enqueues
        served = 0
        deadline = time.monotonic() + WAIT_S
        while len(seen) < 3:
            assert time.monotonic() < deadline, f"{len(seen)} of 3 reports"
            inside["poll"] = True
            served += producer.poll(0.1)
            inside["poll"] = False
        assert served >= 1
        producer.produce(topic, b"k", b"v4", None, on_delivery(4))
        inside["flush"] = True
        assert producer.flush(WAIT_S) == 0
        inside["flush"] = False
        me = threading.get_ident()
        assert sorted(seen) == [
            (1, "poll", True, me),
            (2, "poll", True, me),
            (3, "poll", True, me),
            (4, "flush", True, me),
        ]
        assert producer.poll(0.0) >= 0 and len(seen) == 4  # each report runs once

    def test_flush_waits_for_every_record_and_reports_each_once(self) -> None:
        topic = self.new_topic(partitions=2)
        producer = self.make_producer()
        tokens: list[int] = []

        def delivered(n: int) -> Callable[[DeliveryOutcome], None]:
            def record(outcome: DeliveryOutcome) -> None:
                if outcome.ok:
                    tokens.append(n)

            return record

        for n in range(20):
            producer.produce(
                topic, KEYS[n % len(KEYS)], b"%d" % n, [("n", b"%d" % n)], delivered(n)
            )
        assert producer.flush(WAIT_S) == 0
        assert sorted(tokens) == list(range(20))
        producer.poll(0.0)
        assert producer.flush(1.0) == 0
        assert sorted(tokens) == list(range(20))  # nothing reported twice
        consumer = self.make_consumer(self.new_group())
        consumer.subscribe([topic])
        got = self.consume(consumer, 20)
        assert sorted(int(m.value or b"") for m in got) == list(range(20))
        assert all(m.header_items == (("n", m.value),) for m in got)
        consumer.close()

    def test_records_of_one_key_share_a_partition_in_the_order_produced(self) -> None:
        topic = self.new_topic(partitions=3)
        producer = self.make_producer()
        keys = KEYS[:6]
        records = [(key, key + b"#%d" % n) for n in range(5) for key in keys]
        self.produce_all(producer, topic, records)
        consumer = self.make_consumer(self.new_group())
        consumer.subscribe([topic])
        got = self.consume(consumer, len(records))
        for key in keys:
            mine = [m for m in got if m.key == key]
            assert len({m.partition for m in mine}) == 1, key
            assert [m.value for m in mine] == [key + b"#%d" % n for n in range(5)]
            assert [m.offset for m in mine] == sorted(m.offset for m in mine)
        assert len({m.partition for m in got}) > 1  # the keys did spread (else nothing shown)
        consumer.close()


class MessageConsumerContract(MessagingWorld):
    """Tests every ``MessageConsumer`` must pass (records written through a producer)."""

    def test_the_assignment_arrives_inside_poll_batch_with_every_partition(self) -> None:
        topic = self.new_topic(partitions=2)
        consumer = self.make_consumer(self.new_group())
        assigned: list[Partition] = []
        consumer.subscribe([topic], on_assign=assigned.extend)
        assert assigned == []  # rebalance callbacks run inside poll_batch only
        self.wait_for(lambda: len(consumer.assignment()) == 2, consumer)
        both = [Partition(topic, 0), Partition(topic, 1)]
        assert sorted(consumer.assignment()) == both
        assert sorted(assigned) == both
        consumer.close()

    def test_records_arrive_in_partition_order_with_their_offsets_in_bounded_batches(
        self,
    ) -> None:
        topic = self.new_topic()
        self.produce_all(
            self.make_producer(), topic, [(b"k%d" % (n % 3), b"%d" % n) for n in range(10)]
        )
        consumer = self.make_consumer(self.new_group())
        consumer.subscribe([topic])
        got = self.consume(consumer, 10, max_messages=3)
        assert [m.offset for m in got] == list(range(10))
        assert [m.value for m in got] == [b"%d" % n for n in range(10)]
        assert {(m.topic, m.partition) for m in got} == {(topic, 0)}
        consumer.close()

    def test_the_group_resumes_right_after_the_highest_stored_and_committed_offset(
        self,
    ) -> None:
        topic = self.new_topic()
        producer = self.make_producer()
        self.produce_all(producer, topic, [(b"k", b"%d" % n) for n in range(6)])
        group = self.new_group()
        first = self.make_consumer(group)
        first.subscribe([topic])
        got = self.consume(first, 6)
        # Out of order on purpose: the highest offset of a partition is the one stored.
        assert first.store_offsets([got[3], got[1]]) is True
        first.commit()
        first.close()

        second = self.make_consumer(group)
        second.subscribe([topic])
        rest = self.consume(second, 2)  # nothing re-read, nothing skipped
        assert [(m.offset, m.value) for m in rest] == [(4, b"4"), (5, b"5")]
        second.close()

        other_group = self.make_consumer(self.new_group())
        other_group.subscribe([topic])
        assert [m.offset for m in self.consume(other_group, 6)] == list(range(6))
        other_group.close()

    def test_records_never_stored_are_read_again_by_the_next_member(self) -> None:
        topic = self.new_topic()
        self.produce_all(self.make_producer(), topic, [(b"k", b"%d" % n) for n in range(3)])
        group = self.new_group()
        first = self.make_consumer(group)
        first.subscribe([topic])
        self.consume(first, 3)
        first.commit()  # nothing stored: commits nothing (and does not fail)
        first.close()
        second = self.make_consumer(group)
        second.subscribe([topic])
        assert [m.value for m in self.consume(second, 3)] == [b"0", b"1", b"2"]
        second.close()

    def test_pause_stops_one_partition_and_resume_restarts_it_where_it_stood(self) -> None:
        topic = self.new_topic(partitions=2)
        consumer = self.make_consumer(self.new_group())
        consumer.subscribe([topic])
        self.wait_for(lambda: len(consumer.assignment()) == 2, consumer)
        paused = Partition(topic, 0)
        consumer.pause([paused])
        self.produce_all(self.make_producer(), topic, [(key, key) for key in KEYS])
        running = self.drain(consumer)
        deadline = time.monotonic() + WAIT_S
        while not running:
            assert time.monotonic() < deadline, "nothing arrived from the running partition"
            running += self.drain(consumer)
        assert {m.partition for m in running} == {1}
        assert paused in consumer.assignment()  # paused, still assigned
        expected = len(KEYS) - len(running)
        assert expected > 0  # some keys went to the paused partition (else nothing shown)

        consumer.resume([paused])
        resumed = self.consume(consumer, expected)
        assert {m.partition for m in resumed} == {0}
        assert [m.offset for m in resumed] == list(range(expected))
        assert sorted(m.key or b"" for m in running + resumed) == sorted(KEYS)
        consumer.close()

    def test_a_partition_taken_by_a_new_member_is_revoked_and_refuses_stored_offsets(
        self,
    ) -> None:
        topic = self.new_topic(partitions=2)
        self.produce_all(self.make_producer(), topic, [(key, key) for key in KEYS])
        group = self.new_group()
        revoked: list[Partition] = []
        first = self.make_consumer(group)
        first.subscribe([topic], on_revoke=revoked.extend)
        held = self.spread(self.consume(first, len(KEYS)))
        assert sorted(held) == [0, 1]

        second = self.make_consumer(group)
        second.subscribe([topic])
        taken: list[InboundMessage] = []
        deadline = time.monotonic() + WAIT_S
        while not (len(first.assignment()) == 1 and len(second.assignment()) == 1):
            assert time.monotonic() < deadline, "the rebalance did not complete"
            assert list(first.poll_batch(100, 0.1)) == []  # first has read everything
            taken += second.poll_batch(100, 0.1)
        (kept,) = first.assignment()
        assert revoked == [p for p in (Partition(topic, 0), Partition(topic, 1)) if p != kept]
        assert second.assignment() == revoked
        lost = revoked[0].partition
        assert first.store_offsets([held[lost][-1]]) is False
        assert first.store_offsets([held[kept.partition][-1]]) is True
        # Nothing was committed for the moved partition: its new owner reads all of it.
        taken += self.consume(second, len(held[lost]) - len(taken))
        assert [(m.partition, m.offset, m.key) for m in taken] == [
            (m.partition, m.offset, m.key) for m in held[lost]
        ]
        first.close()
        second.close()

    def test_close_is_safe_to_call_twice(self) -> None:
        topic = self.new_topic()
        consumer = self.make_consumer(self.new_group())
        consumer.subscribe([topic])
        self.wait_for(lambda: len(consumer.assignment()) == 1, consumer)
        consumer.close()
        consumer.close()
