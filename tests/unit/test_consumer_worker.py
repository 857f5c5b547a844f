"""PushWorker's poll loop over fakes of its ports: offsets, retry holds, DLQ acks, rebalances."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.kafka.consumer import ConsumedMessage, Partition
from adapters.kafka.headers import due_at_of
from consumer.handling import HandleResult
from consumer.ordered_batches import OrderedBatchExecutor
from consumer.push_handler import DeadLetter, Handled
from consumer.worker import PushWorker, WorkerSettings
from tests.messaging_fakes import FakeConsumer, FakeProducer

DEADLINE = 10.0
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

RunConcurrently = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]
Worker = PushWorker[ConsumedMessage]


def msg(topic: str, offset: int, key: bytes = b"k", due: datetime | None = None) -> ConsumedMessage:
    items: tuple[tuple[str, bytes | None], ...] = ()
    if due is not None:
        items = (("due_at", due.isoformat().encode()),)
    return ConsumedMessage(topic, 0, offset, key, b"v", dict(items), None, items)


class FakeAttempts:
    """What ``new_attempts`` returns: remembers the threads that used it and its closing."""

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeHandler:
    """Handler port stand-in: records what ran; values ``poison`` are dead letters.

    Each record's "ERP call" runs through ``run_concurrently``. A batch holding a
    record ``block`` selects sets ``started`` and waits for ``gate``; the next
    ``fail_next`` calls of ``handle_batch`` raise. Misuse by the worker (two
    records of one key in a batch, a closed or shared attempts object) lands in
    ``problems``.
    """

    def __init__(self, block: Callable[[ConsumedMessage], bool] | None = None) -> None:
        self.lock = threading.Lock()
        self.handled: list[tuple[str, int]] = []
        self.batches: list[list[tuple[str, int]]] = []
        self.attempts_made: list[FakeAttempts] = []
        self.problems: list[str] = []
        self.block = block or (lambda message: False)
        self.gate = threading.Event()
        self.started = threading.Event()
        self.fail_next = 0

    def new_attempts(self) -> FakeAttempts:
        attempts = FakeAttempts()
        with self.lock:
            self.attempts_made.append(attempts)
        return attempts

    def due_at(self, message: Any) -> datetime | None:
        return due_at_of(message.header_items)

    def handle_batch(
        self, messages: Sequence[Any], attempts: Any, run_concurrently: RunConcurrently
    ) -> list[HandleResult]:
        with self.lock:
            self.batches.append([(m.topic, m.offset) for m in messages])
            if not isinstance(attempts, FakeAttempts) or attempts.closed:
                self.problems.append(f"bad attempts {attempts!r}")
            else:
                attempts.threads.add(threading.get_ident())
                if len(attempts.threads) > 1:
                    self.problems.append("attempts shared by two threads")
            if len({m.key for m in messages}) != len(messages):
                self.problems.append(f"two records of one key in {self.batches[-1]}")
            fail = self.fail_next > 0
            self.fail_next -= fail
        if fail:
            raise RuntimeError("database down")
        if any(self.block(m) for m in messages):
            self.started.set()
            self.gate.wait(DEADLINE)
        return run_concurrently(self.call_erp, list(messages))

    def call_erp(self, message: Any) -> HandleResult:
        with self.lock:
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
    **settings: Any,
) -> Worker:
    base = WorkerSettings(
        concurrency=2,
        pipelines=2,
        max_pending=4,
        poll_timeout_s=0.0,
        drain_timeout_s=DEADLINE,
        pause_after_s=pause_after_s,
        error_backoff_s=0.01,
    )
    worker: Worker = PushWorker(
        consumer,
        producer,
        handler,
        requests_topic="req",
        retry_topics=["retry.1"],
        dlq_topic="dlq",
        settings=dataclasses.replace(base, **settings),
        clock=clock,
    )
    return worker


def start(worker: Worker, consumer: FakeConsumer) -> None:
    """What ``run`` sets up before its loop, for tests that drive ``_step`` themselves."""
    s = worker.settings
    worker._calls = ThreadPoolExecutor(s.concurrency, thread_name_prefix="erp-call")
    worker._executor = OrderedBatchExecutor(
        worker._run_batch, s.pipelines, s.max_pending, max_batch=s.batch_size
    )
    consumer.subscribe([], worker._on_assign, worker._on_revoke, worker._on_lost)


def step_until(worker: Worker, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        worker._step()
        time.sleep(0.005)


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def pending(worker: Worker) -> int:
    assert worker._executor is not None
    return worker._executor.pending


def finish(worker: Worker, handler: FakeHandler) -> None:
    """Shut a stepped worker down; the handler saw no misuse and every attempts got closed."""
    handler.gate.set()
    worker._shutdown()
    check_handler(handler)


def check_handler(handler: FakeHandler) -> None:
    assert handler.problems == []
    assert all(a.closed for a in handler.attempts_made)


def run_in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, name="poll-loop", daemon=True)
    thread.start()
    return thread


def stop_and_join(worker: Worker, thread: threading.Thread) -> None:
    worker.stop()
    thread.join(DEADLINE)
    assert not thread.is_alive()


# --- ported from the one-record-per-thread worker --------------------------------------------
def test_offsets_are_stored_after_handling_in_order() -> None:
    consumer, producer, handler, clock = FakeConsumer(), FakeProducer(), FakeHandler(), Clock()
    consumer.assigned = [Partition("req", 0)]
    consumer.batches = [[msg("req", 0, b"a"), msg("req", 1, b"b"), msg("req", 2, b"a")]]
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    step_until(worker, lambda: ("req", 3) in consumer.stored)
    assert sorted(handler.handled) == [("req", 0), ("req", 1), ("req", 2)]
    assert handler.handled.index(("req", 0)) < handler.handled.index(("req", 2))  # key a
    assert consumer.stored == sorted(consumer.stored)
    finish(worker, handler)
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
    assert handler.batches == []
    assert p in consumer.paused
    clock.now = due - timedelta(milliseconds=1)
    worker._step()
    assert handler.handled == []
    clock.now = due
    step_until(worker, lambda: ("retry.1", 7) in consumer.stored)
    # Both are released together; their keys differ, so their order is not fixed.
    assert sorted(handler.handled) == [("retry.1", 5), ("retry.1", 6)]
    assert p not in consumer.paused
    finish(worker, handler)


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
    assert handler.batches == []
    assert consumer.stored == []
    finish(worker, handler)


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
    finish(worker, handler)


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
    assert worker.stats == {"dead_lettered": 1}
    finish(worker, handler)


def test_full_executor_pauses_every_partition_then_resumes() -> None:
    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    handler = FakeHandler(block=lambda message: True)
    parts = [Partition("req", 0), Partition("retry.1", 0)]
    consumer.assigned = parts
    consumer.batches = [[msg("req", n, bytes([n])) for n in range(4)]]
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    worker._step()
    worker._step()
    assert consumer.paused == set(parts)
    handler.gate.set()
    step_until(worker, lambda: not consumer.paused)
    step_until(worker, lambda: ("req", 4) in consumer.stored)
    finish(worker, handler)


def test_a_full_executor_stops_taking_records_without_pausing_while_it_progresses() -> None:
    # Pausing drops librdkafka's prefetched records; a full executor that still makes
    # progress just is not fed until it has room again.
    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    handler = FakeHandler(block=lambda message: True)
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
    handler.gate.set()
    step_until(worker, lambda: ("req", 5) in consumer.stored)
    assert not consumer.paused
    finish(worker, handler)


# --- offsets, dead letters, rebalances, errors -----------------------------------------------
def test_offsets_are_stored_only_for_the_contiguous_completed_prefix() -> None:
    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    handler = FakeHandler(block=lambda message: message.key == b"a")
    consumer.assigned = [Partition("req", 0)]
    consumer.batches = [[msg("req", 0, b"a")]]
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    worker._step()
    assert handler.started.wait(DEADLINE)  # offset 0 is in flight on one pipeline
    consumer.batches = [[msg("req", 1, b"b"), msg("req", 2, b"c")]]
    worker._step()
    wait_until(lambda: pending(worker) == 1)  # 1 and 2 done on the other one
    for _ in range(3):
        worker._step()
    assert consumer.stored == []  # storing 3 would skip 0 if the process died now
    handler.gate.set()
    step_until(worker, lambda: ("req", 3) in consumer.stored)
    assert consumer.stored == [("req", 3)]
    finish(worker, handler)


def test_dead_letters_of_a_batch_hold_the_offset_until_acked() -> None:
    consumer, producer, handler, clock = FakeConsumer(), FakeProducer(), FakeHandler(), Clock()
    consumer.assigned = [Partition("req", 0)]
    poison = ConsumedMessage("req", 0, 1, b"b", b"poison", {}, None, ())
    consumer.batches = [[msg("req", 0, b"a"), poison, msg("req", 2, b"c")]]
    producer.hold = True
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    step_until(worker, lambda: pending(worker) == 0)
    for _ in range(3):
        worker._step()
    assert producer.sent == [("dlq", b"poison")]
    assert consumer.stored == [("req", 1)]  # 0 is done; 1 waits for its dead letter's ack
    producer.hold = False
    step_until(worker, lambda: ("req", 3) in consumer.stored)
    assert worker.stats == {"SUCCESS": 2, "dead_lettered": 1}
    finish(worker, handler)


def test_a_lost_partition_forgets_in_flight_and_held_records() -> None:
    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    handler = FakeHandler(block=lambda message: True)
    parts = [Partition("req", 0), Partition("retry.1", 0)]
    consumer.assigned = parts
    due = T0 + timedelta(seconds=5)
    consumer.batches = [[msg("req", 0, b"a"), msg("retry.1", 3, b"r", due=due)]]
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    worker._step()
    assert handler.started.wait(DEADLINE)
    consumer.callbacks["lost"](parts)
    consumer.assigned = []
    handler.gate.set()
    wait_until(lambda: pending(worker) == 0)
    clock.now = due
    for _ in range(3):
        worker._step()
    assert handler.handled == [("req", 0)]  # the held retry record was dropped too
    assert consumer.stored == []  # another member owns these offsets now
    finish(worker, handler)


def test_revocation_waits_for_in_flight_records_then_stores_and_commits() -> None:
    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    handler = FakeHandler(block=lambda message: True)
    p = Partition("req", 0)
    consumer.assigned = [p]
    consumer.batches = [[msg("req", 0, b"a")]]
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    worker._step()
    assert handler.started.wait(DEADLINE)
    threading.Timer(0.1, handler.gate.set).start()
    consumer.callbacks["revoke"]([p])
    assert handler.gate.is_set()
    assert consumer.stored == [("req", 1)]
    assert consumer.commits == 1
    finish(worker, handler)


def test_a_failing_batch_is_run_again_whole(caplog: pytest.LogCaptureFixture) -> None:
    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    handler = FakeHandler(block=lambda message: message.key == b"z")
    consumer.assigned = [Partition("req", 0)]
    consumer.batches = [[msg("req", 0, b"z")]]
    worker = make_worker(consumer, producer, handler, clock, pipelines=1, max_pending=8)
    start(worker, consumer)
    worker._step()
    assert handler.started.wait(DEADLINE)  # the only pipeline is busy: the next two queue
    consumer.batches = [[msg("req", 1, b"a"), msg("req", 2, b"b")]]
    worker._step()
    handler.fail_next = 1
    with caplog.at_level(logging.ERROR, logger="orderflow.consumer"):
        handler.gate.set()
        step_until(worker, lambda: ("req", 3) in consumer.stored)
    assert handler.batches == [[("req", 0)], [("req", 1), ("req", 2)], [("req", 1), ("req", 2)]]
    assert sorted(handler.handled) == [("req", 0), ("req", 1), ("req", 2)]
    assert worker.stats == {"SUCCESS": 3}
    assert any("failed" in r.getMessage() for r in caplog.records)
    finish(worker, handler)


def test_a_batch_failing_while_stopping_is_left_for_redelivery() -> None:
    consumer, producer, handler, clock = FakeConsumer(), FakeProducer(), FakeHandler(), Clock()
    consumer.assigned = [Partition("req", 0)]
    consumer.batches = [[msg("req", 0, b"a")]]
    handler.fail_next = 1_000_000
    worker = make_worker(consumer, producer, handler, clock)
    start(worker, consumer)
    step_until(worker, lambda: len(handler.batches) >= 2)  # retried after the backoff
    worker.stop()
    finish(worker, handler)
    assert handler.handled == []
    assert consumer.stored == []  # not completed: the record is redelivered
    assert consumer.closed


# --- batches (through ``run``) ----------------------------------------------------------------
def test_handle_batch_gets_the_polled_records_of_distinct_keys_together() -> None:
    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    handler = FakeHandler(block=lambda message: message.key == b"z")
    consumer.assigned = [Partition("req", 0)]
    consumer.batches = [[msg("req", 0, b"z")]]
    worker = make_worker(consumer, producer, handler, clock, pipelines=1, max_pending=16)
    thread = run_in_thread(worker)
    try:
        assert handler.started.wait(DEADLINE)
        keys = [b"a", b"b", b"a", b"c", b"b"]
        consumer.batches.append([msg("req", n + 1, key) for n, key in enumerate(keys)])
        wait_until(lambda: pending(worker) == 6)  # all queued behind the blocked batch
        handler.gate.set()
        wait_until(lambda: ("req", 6) in consumer.stored)
    finally:
        handler.gate.set()
        stop_and_join(worker, thread)
    assert handler.batches == [
        [("req", 0)],
        [("req", 1), ("req", 2), ("req", 4)],  # a, b, c: one call
        [("req", 3), ("req", 5)],  # a, b again only after their previous record
    ]
    assert consumer.stored == sorted(consumer.stored)
    check_handler(handler)


def test_batch_size_bounds_the_records_of_one_handle_batch() -> None:
    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    handler = FakeHandler(block=lambda message: message.key == b"z")
    consumer.assigned = [Partition("req", 0)]
    consumer.batches = [[msg("req", 0, b"z")]]
    worker = make_worker(
        consumer, producer, handler, clock, pipelines=1, max_pending=16, batch_size=2
    )
    thread = run_in_thread(worker)
    try:
        assert handler.started.wait(DEADLINE)
        consumer.batches.append([msg("req", n, bytes([n])) for n in range(1, 6)])
        wait_until(lambda: pending(worker) == 6)
        handler.gate.set()
        wait_until(lambda: ("req", 6) in consumer.stored)
    finally:
        handler.gate.set()
        stop_and_join(worker, thread)
    assert [[o for _, o in b] for b in handler.batches] == [[0], [1, 2], [3, 4], [5]]
    check_handler(handler)


def test_each_pipeline_has_its_own_attempts_closed_at_shutdown() -> None:
    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    handler = FakeHandler(block=lambda message: message.key == b"z")
    consumer.assigned = [Partition("req", 0)]
    consumer.batches = [[msg("req", 0, b"z")]]
    worker = make_worker(consumer, producer, handler, clock, pipelines=2, max_pending=16)
    thread = run_in_thread(worker)
    try:
        assert handler.started.wait(DEADLINE)  # pipeline 1 is blocked
        for n in range(1, 6):  # one by one: pipeline 2 takes each
            consumer.batches.append([msg("req", n, bytes([n]))])
            wait_until(lambda n=n: ("req", n) in handler.handled)  # type: ignore[misc]
        handler.gate.set()
        wait_until(lambda: ("req", 6) in consumer.stored)
        made = list(handler.attempts_made)
        assert len(made) == 2  # one per pipeline thread, not one per batch
        assert not any(a.closed for a in made)
        assert made[0].threads.isdisjoint(made[1].threads)
    finally:
        handler.gate.set()
        stop_and_join(worker, thread)
    assert handler.attempts_made == made
    assert all(a.closed for a in made)
    assert consumer.closed
    check_handler(handler)


def test_run_concurrently_runs_the_function_on_every_item_in_order() -> None:
    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    both_busy = threading.Barrier(2, timeout=DEADLINE)  # two calls at once: concurrency 2
    seen: list[tuple[int, str]] = []
    results: list[list[Any]] = []

    def call(n: int) -> int:
        both_busy.wait()
        time.sleep(0.001 * (8 - n))  # later items finish first
        seen.append((n, threading.current_thread().name))
        return n * 10

    class MappingHandler(FakeHandler):
        def handle_batch(
            self, messages: Sequence[Any], attempts: Any, run_concurrently: RunConcurrently
        ) -> list[HandleResult]:
            results.append(run_concurrently(call, list(range(8))))
            return super().handle_batch(messages, attempts, run_concurrently)

    handler = MappingHandler()
    consumer.assigned = [Partition("req", 0)]
    consumer.batches = [[msg("req", 0, b"a")]]
    worker = make_worker(consumer, producer, handler, clock, concurrency=2, pipelines=1)
    thread = run_in_thread(worker)
    try:
        wait_until(lambda: ("req", 1) in consumer.stored)
    finally:
        stop_and_join(worker, thread)
    assert results == [[n * 10 for n in range(8)]]
    assert sorted(n for n, _ in seen) == list(range(8))
    assert all(name.startswith("erp-call") for _, name in seen)  # the ERP pool, not the caller
    assert handler.handled == [("req", 0)]
    check_handler(handler)


def test_stop_drains_in_flight_records_then_commits_and_closes() -> None:
    consumer, producer, clock = FakeConsumer(), FakeProducer(), Clock()
    handler = FakeHandler(block=lambda message: True)
    p = Partition("req", 0)
    consumer.assigned = [p]
    consumer.batches = [[msg("req", 0, b"a"), msg("req", 1, b"b")]]
    worker = make_worker(consumer, producer, handler, clock)
    thread = run_in_thread(worker)
    try:
        assert handler.started.wait(DEADLINE)
        wait_until(lambda: pending(worker) == 2)
        worker.stop()
        threading.Timer(0.1, handler.gate.set).start()
        thread.join(DEADLINE)
        assert not thread.is_alive()
    finally:
        handler.gate.set()
        stop_and_join(worker, thread)
    assert sorted(handler.handled) == [("req", 0), ("req", 1)]
    assert consumer.stored[-1] == ("req", 2)
    assert consumer.commits >= 1
    assert p in consumer.paused  # nothing more fetched while draining
    assert consumer.closed
    check_handler(handler)
