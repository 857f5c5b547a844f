"""PushWorker's poll loop over fakes of its ports: offsets, retry holds, DLQ acks, rebalances."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.kafka.consumer import ConsumedMessage, Partition
from adapters.kafka.headers import due_at_of
from consumer.push_handler import DeadLetter, Handled
from consumer.worker import PushWorker, WorkerSettings

DEADLINE = 10.0
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def msg(topic: str, offset: int, key: bytes = b"k", due: datetime | None = None) -> ConsumedMessage:
    items: tuple[tuple[str, bytes | None], ...] = ()
    if due is not None:
        items = (("due_at", due.isoformat().encode()),)
    return ConsumedMessage(topic, 0, offset, key, b"v", dict(items), None, items)


@dataclass
class FakeConsumer:
    batches: list[list[ConsumedMessage]] = field(default_factory=list)
    paused: set[Partition] = field(default_factory=set)
    stored: list[tuple[str, int]] = field(default_factory=list)
    assigned: list[Partition] = field(default_factory=list)
    commits: int = 0
    callbacks: dict[str, Any] = field(default_factory=dict)

    def subscribe(
        self, topics: Any, on_assign: Any = None, on_revoke: Any = None, on_lost: Any = None
    ) -> None:
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def assignment(self) -> list[Partition]:
        return list(self.assigned)

    def poll_batch(self, max_messages: int = 500, timeout: float = 1.0) -> list[Any]:
        return self.batches.pop(0) if self.batches else []

    def pause(self, partitions: Any) -> None:
        self.paused |= set(partitions)

    def resume(self, partitions: Any) -> None:
        self.paused -= set(partitions)

    def store_offsets(self, messages: Any) -> bool:
        self.stored += [(m.topic, m.next_offset) for m in messages]
        return True

    def commit(self, asynchronous: bool = False) -> Any:
        self.commits += 1
        return {}

    def close(self) -> None:
        pass


@dataclass
class Report:
    ok: bool
    error: str | None = None


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes | None]] = field(default_factory=list)
    waiting: list[Callable[[Any], None]] = field(default_factory=list)
    fail_next: int = 0

    def produce(
        self, topic: str, key: Any, value: Any, headers: Any = None, on_delivery: Any = None
    ) -> None:
        self.sent.append((topic, value))
        self.waiting.append(on_delivery)

    def poll(self, timeout: float = 0.0) -> int:
        served, self.waiting = self.waiting, []
        for callback in served:
            if self.fail_next:
                self.fail_next -= 1
                callback(Report(False, "broker down"))
            else:
                callback(Report(True))
        return len(served)

    def flush(self, timeout: float = 30.0) -> int:
        while self.waiting:
            self.poll()
        return 0


class FakeHandler:
    """Handler port stand-in: records what ran; topics ending in 'poison' are dead letters."""

    def __init__(self) -> None:
        self.handled: list[tuple[str, int]] = []

    def new_attempts(self) -> object:
        return object()

    def due_at(self, message: Any) -> datetime | None:
        return due_at_of(message.header_items)

    def handle(self, message: Any, attempts: Any = None) -> Any:
        self.handled.append((message.topic, message.offset))
        if message.value == b"poison":
            return DeadLetter(message.key, message.value, [], "bad")
        return Handled("SUCCESS")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def make_worker(
    consumer: FakeConsumer,
    producer: FakeProducer,
    handler: FakeHandler,
    clock: Clock,
    *,
    pause_after_s: float = 0.0,
) -> PushWorker:
    worker = PushWorker(
        consumer,
        producer,
        handler,  # type: ignore[arg-type]
        requests_topic="req",
        retry_topics=["retry.1"],
        dlq_topic="dlq",
        settings=WorkerSettings(
            concurrency=2,
            max_pending=4,
            poll_timeout_s=0.0,
            drain_timeout_s=DEADLINE,
            pause_after_s=pause_after_s,
        ),
        clock=clock,
    )
    return worker


def start(worker: PushWorker, consumer: FakeConsumer) -> None:
    from consumer.ordered_executor import OrderedExecutor

    worker._executor = OrderedExecutor(2, 4)
    consumer.subscribe([], worker._on_assign, worker._on_revoke, worker._on_lost)


def step_until(worker: PushWorker, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        worker._step()
        time.sleep(0.005)


def test_offsets_are_stored_after_handling_in_order() -> None:
    consumer, producer, handler, clock = FakeConsumer(), FakeProducer(), FakeHandler(), Clock()
    consumer.assigned = [Partition("req", 0)]
    consumer.batches = [[msg("req", 0, b"a"), msg("req", 1, b"b"), msg("req", 2, b"a")]]
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    step_until(worker, lambda: ("req", 3) in consumer.stored)
    assert sorted(handler.handled) == [("req", 0), ("req", 1), ("req", 2)]
    worker._shutdown()
    assert consumer.commits >= 1


def test_retry_record_is_held_until_due_never_early() -> None:
    consumer, producer, handler, clock = FakeConsumer(), FakeProducer(), FakeHandler(), Clock()
    p = Partition("retry.1", 0)
    consumer.assigned = [p]
    due = T0 + timedelta(seconds=2)
    consumer.batches = [[msg("retry.1", 5, due=due), msg("retry.1", 6, b"other")]]
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    for _ in range(5):
        worker._step()
    assert handler.handled == []  # neither the record nor the one behind it
    assert p in consumer.paused
    clock.now = due - timedelta(milliseconds=1)
    worker._step()
    assert handler.handled == []
    clock.now = due
    step_until(worker, lambda: ("retry.1", 7) in consumer.stored)
    assert handler.handled == [("retry.1", 5), ("retry.1", 6)]
    assert p not in consumer.paused
    worker._shutdown()


def test_revocation_forgets_held_records() -> None:
    consumer, producer, handler, clock = FakeConsumer(), FakeProducer(), FakeHandler(), Clock()
    p = Partition("retry.1", 0)
    consumer.assigned = [p]
    consumer.batches = [[msg("retry.1", 1, due=T0 + timedelta(seconds=5))]]
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    worker._step()
    consumer.callbacks["revoke"]([p])
    consumer.assigned = []
    clock.now = T0 + timedelta(seconds=10)
    for _ in range(3):
        worker._step()
    assert handler.handled == []
    assert consumer.stored == []
    worker._shutdown()


def test_a_partition_paused_for_a_held_record_is_fetched_again_when_assigned_back() -> None:
    # Like librdkafka, the fake keeps a partition's pause flag across revoke and assign.
    consumer, producer, handler, clock = FakeConsumer(), FakeProducer(), FakeHandler(), Clock()
    p = Partition("retry.1", 0)
    consumer.assigned = [p]
    due = T0 + timedelta(seconds=5)
    consumer.batches = [[msg("retry.1", 1, due=due)]]
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    worker._step()
    assert p in consumer.paused
    consumer.callbacks["revoke"]([p])
    consumer.callbacks["assign"]([p])
    assert p not in consumer.paused  # else the record (never committed) is never fetched
    consumer.batches = [[msg("retry.1", 1, due=due)]]  # redelivered from the committed offset
    worker._step()
    assert handler.handled == []
    clock.now = due
    step_until(worker, lambda: ("retry.1", 2) in consumer.stored)
    assert handler.handled == [("retry.1", 1)]
    worker._shutdown()


def test_dead_letter_offset_is_stored_only_after_the_broker_acked() -> None:
    consumer, producer, handler, clock = FakeConsumer(), FakeProducer(), FakeHandler(), Clock()
    consumer.assigned = [Partition("req", 0)]
    poison = ConsumedMessage("req", 0, 0, b"k", b"poison", {}, None, ())
    consumer.batches = [[poison]]
    producer.fail_next = 1  # the first delivery fails: produced again
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    step_until(worker, lambda: ("req", 1) in consumer.stored)
    assert producer.sent == [("dlq", b"poison"), ("dlq", b"poison")]
    worker._shutdown()


def test_full_executor_pauses_every_partition_then_resumes() -> None:
    import threading

    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    gate = threading.Event()

    class SlowHandler(FakeHandler):
        def handle(self, message: Any, attempts: Any = None) -> Any:
            gate.wait(DEADLINE)
            return super().handle(message, attempts)

    handler = SlowHandler()
    parts = [Partition("req", 0), Partition("retry.1", 0)]
    consumer.assigned = parts
    consumer.batches = [[msg("req", n, bytes([n])) for n in range(4)]]
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    worker._step()
    worker._step()
    assert consumer.paused == set(parts)
    gate.set()
    step_until(worker, lambda: not consumer.paused)
    step_until(worker, lambda: ("req", 4) in consumer.stored)
    worker._shutdown()


def test_a_full_executor_stops_taking_records_without_pausing_while_it_progresses() -> None:
    # Pausing drops librdkafka's prefetched records; a full executor that still makes
    # progress just is not fed until it has room again.
    import threading

    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    gate = threading.Event()

    class SlowHandler(FakeHandler):
        def handle(self, message: Any, attempts: Any = None) -> Any:
            gate.wait(DEADLINE)
            return super().handle(message, attempts)

    handler = SlowHandler()
    parts = [Partition("req", 0)]
    consumer.assigned = parts
    consumer.batches = [
        [msg("req", n, bytes([n])) for n in range(4)],
        [msg("req", 4, b"\x04")],
    ]
    worker = make_worker(consumer, producer, handler, clock, pause_after_s=DEADLINE)
    start(worker, consumer)
    worker._step()  # fills the executor (max_pending 4)
    worker._step()  # full: waits for room (poll timeout 0) instead of polling
    assert not consumer.paused
    assert len(consumer.batches) == 1  # the next batch was not taken
    gate.set()
    step_until(worker, lambda: ("req", 5) in consumer.stored)
    assert not consumer.paused
    worker._shutdown()
