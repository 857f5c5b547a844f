"""OrderedBatchExecutor: same key in order, keys batched and concurrent, bounded pending count."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import pytest

from consumer.ordered_batches import ExecutorClosed, OrderedBatchExecutor

DEADLINE = 10.0

Item = tuple[str, int]


class Recorder:
    """A ``run_batch`` that records every batch (and its items, in order) it was given.

    ``hook`` runs on each batch before it is recorded as done (to block or raise).
    """

    def __init__(self, hook: Callable[[list[Item]], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.batches: list[list[Item]] = []
        self.done: list[Item] = []
        self.hook = hook

    def __call__(self, items: list[Item]) -> None:
        with self.lock:
            self.batches.append(list(items))
        if self.hook is not None:
            self.hook(items)
        with self.lock:
            self.done += items

    def done_of(self, key: str) -> list[int]:
        with self.lock:
            return [n for k, n in self.done if k == key]


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def gated(gate: threading.Event) -> Callable[[list[Item]], None]:
    """A ``run_batch`` that waits for ``gate``."""

    def run_batch(items: list[Item]) -> None:
        gate.wait(DEADLINE)

    return run_batch


def test_items_of_one_key_run_in_submission_order() -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()

    def run_batch(items: list[Item]) -> None:
        for key, n in items:
            time.sleep(0.0005 * ((n * 7) % 3))
            with lock:
                seen[key].append(n)

    executor = OrderedBatchExecutor(run_batch, max_workers=4, max_pending=8)
    try:
        for n in range(200):
            for key in ("a", "b", "c"):
                executor.submit(key, (key, n))
        assert executor.wait_idle(DEADLINE)
        assert dict(seen) == {k: list(range(200)) for k in "abc"}
    finally:
        executor.shutdown(DEADLINE)


def test_one_key_never_runs_two_items_at_once() -> None:
    running: dict[str, int] = defaultdict(int)
    overlap = False
    lock = threading.Lock()

    def run_batch(items: list[Item]) -> None:
        nonlocal overlap
        with lock:
            for key, _ in items:
                running[key] += 1
                overlap = overlap or running[key] > 1
        time.sleep(0.002)
        with lock:
            for key, _ in items:
                running[key] -= 1

    executor = OrderedBatchExecutor(run_batch, max_workers=4, max_pending=8)
    try:
        for n in range(20):
            executor.submit("same", ("same", n))
            executor.submit(f"other-{n % 3}", (f"other-{n % 3}", n))
        assert executor.wait_idle(DEADLINE)
        assert not overlap
    finally:
        executor.shutdown(DEADLINE)


def test_different_keys_run_concurrently() -> None:
    # One key per batch: three batches only get past the barrier if they run at the same time.
    barrier = threading.Barrier(3, timeout=DEADLINE)
    passed: list[str] = []

    def run_batch(items: list[Item]) -> None:
        barrier.wait()
        passed.extend(key for key, _ in items)

    executor = OrderedBatchExecutor(run_batch, max_workers=4, max_pending=8, max_batch=1)
    try:
        for key in ("x", "y", "z"):
            executor.submit(key, (key, 0))
        assert executor.wait_idle(DEADLINE)
        assert sorted(passed) == ["x", "y", "z"]
    finally:
        executor.shutdown(DEADLINE)


def test_slow_key_does_not_block_other_keys() -> None:
    release = threading.Event()
    slow_started = threading.Event()

    def hook(items: list[Item]) -> None:
        if ("slow", 1) in items:
            slow_started.set()
            release.wait(DEADLINE)

    recorder = Recorder(hook)
    executor = OrderedBatchExecutor(recorder, max_workers=4, max_pending=8)
    try:
        executor.submit("slow", ("slow", 1))
        assert slow_started.wait(DEADLINE)
        executor.submit("slow", ("slow", 2))
        for n in range(5):
            executor.submit(f"fast-{n}", (f"fast-{n}", n))
        wait_for(lambda: sum(k.startswith("fast") for k, _ in recorder.done) == 5)
        assert recorder.done_of("slow") == []  # the second one still behind the blocked first
        assert all(("slow", 2) not in batch for batch in recorder.batches)
        release.set()
        assert executor.wait_idle(DEADLINE)
        assert recorder.done_of("slow") == [1, 2]
    finally:
        release.set()
        executor.shutdown(DEADLINE)


def test_pending_count_drives_backpressure() -> None:
    gate = threading.Event()
    executor = OrderedBatchExecutor(gated(gate), max_workers=1, max_pending=4, resume_at=1)
    try:
        for n in range(4):
            executor.submit(n, ("k", n))
        assert executor.pending == 4
        assert executor.is_full
        assert not executor.has_room
        assert executor.capacity() == 0
        assert not executor.wait_room(1, 0.01)
        gate.set()
        assert executor.wait_room(4, DEADLINE)
        assert executor.wait_idle(DEADLINE)
        assert executor.has_room
        assert not executor.is_full
        assert executor.capacity() == 4
    finally:
        gate.set()
        executor.shutdown(DEADLINE)


def test_a_failing_batch_does_not_stop_its_keys(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()

    def hook(items: list[Item]) -> None:
        if ("blocker", 0) in items:
            gate.wait(DEADLINE)
        if ("k", 1) in items:
            raise RuntimeError("boom")

    recorder = Recorder(hook)
    executor = OrderedBatchExecutor(recorder, max_workers=1, max_pending=8)
    try:
        executor.submit("blocker", ("blocker", 0))
        wait_for(lambda: len(recorder.batches) == 1)
        for item in (("k", 1), ("j", 1), ("k", 2), ("j", 2)):
            executor.submit(item[0], item)
        with caplog.at_level(logging.ERROR, logger="consumer.ordered_batches"):
            gate.set()
            assert executor.wait_idle(DEADLINE)
        assert recorder.batches[1] == [("k", 1), ("j", 1)]  # failed together
        assert recorder.done_of("k") == [2]
        assert recorder.done_of("j") == [2]
        assert executor.pending == 0
        assert any("failed" in r.getMessage() for r in caplog.records)
    finally:
        gate.set()
        executor.shutdown(DEADLINE)


def test_shutdown_drains_then_refuses() -> None:
    ran: list[int] = []

    def run_batch(items: list[Item]) -> None:
        time.sleep(0.002)
        ran.extend(n for _, n in items)

    executor = OrderedBatchExecutor(run_batch, max_workers=2, max_pending=10)
    for n in range(5):
        executor.submit("k", ("k", n))
    assert executor.shutdown(DEADLINE)
    assert ran == [0, 1, 2, 3, 4]
    assert executor.pending == 0
    with pytest.raises(ExecutorClosed):
        executor.submit("k", ("k", 5))


def test_shutdown_timing_out_reports_unfinished_items() -> None:
    gate = threading.Event()
    executor = OrderedBatchExecutor(gated(gate), max_workers=1, max_pending=4)
    try:
        executor.submit("k", ("k", 0))
        executor.submit("k", ("k", 1))
        threading.Timer(0.2, gate.set).start()  # lets the running batch end (and the join)
        assert not executor.shutdown(timeout=0.01)
        with pytest.raises(ExecutorClosed):
            executor.submit("k", ("k", 2))
    finally:
        gate.set()


def test_invalid_sizes_are_refused() -> None:
    def run_batch(items: list[Item]) -> None:
        pass

    with pytest.raises(ValueError):
        OrderedBatchExecutor(run_batch, max_workers=0, max_pending=1)
    with pytest.raises(ValueError):
        OrderedBatchExecutor(run_batch, max_workers=1, max_pending=0)
    with pytest.raises(ValueError):
        OrderedBatchExecutor(run_batch, max_workers=1, max_pending=2, resume_at=2)
    with pytest.raises(ValueError):
        OrderedBatchExecutor(run_batch, max_workers=1, max_pending=2, max_batch=0)


# --- batching ---------------------------------------------------------------------------------
def blocked_single_worker(
    max_batch: int, max_pending: int = 64
) -> tuple[OrderedBatchExecutor[Item], Recorder, threading.Event]:
    """One worker busy on a ``blocker`` item until the returned gate is set.

    Items submitted meanwhile are all ready when the worker comes back, so its
    next batches are deterministic.
    """
    gate = threading.Event()

    def hook(items: list[Item]) -> None:
        if ("blocker", 0) in items:
            gate.wait(DEADLINE)

    recorder = Recorder(hook)
    executor = OrderedBatchExecutor(recorder, 1, max_pending, max_batch=max_batch)
    executor.submit("blocker", ("blocker", 0))
    wait_for(lambda: len(recorder.batches) == 1)
    return executor, recorder, gate


def test_ready_keys_are_handed_to_one_batch() -> None:
    executor, recorder, gate = blocked_single_worker(max_batch=256)
    try:
        items = [(f"key-{n}", n) for n in range(10)]
        for item in items:
            executor.submit(item[0], item)
        assert executor.pending == 11
        gate.set()
        assert executor.wait_idle(DEADLINE)
        assert recorder.batches == [[("blocker", 0)], items]  # one call, submission order
    finally:
        gate.set()
        executor.shutdown(DEADLINE)


def test_a_batch_holds_at_most_max_batch_items() -> None:
    executor, recorder, gate = blocked_single_worker(max_batch=4)
    try:
        items = [(f"key-{n}", n) for n in range(10)]
        for item in items:
            executor.submit(item[0], item)
        gate.set()
        assert executor.wait_idle(DEADLINE)
        assert recorder.batches == [[("blocker", 0)], items[0:4], items[4:8], items[8:10]]
    finally:
        gate.set()
        executor.shutdown(DEADLINE)


def test_a_batch_never_holds_two_items_of_one_key() -> None:
    executor, recorder, gate = blocked_single_worker(max_batch=256)
    try:
        for n in range(3):
            for key in ("a", "b", "c"):
                executor.submit(key, (key, n))
        executor.submit("d", ("d", 0))
        gate.set()
        assert executor.wait_idle(DEADLINE)
        # Each key's next item waits for the batch holding its previous one.
        assert recorder.batches == [
            [("blocker", 0)],
            [("a", 0), ("b", 0), ("c", 0), ("d", 0)],
            [("a", 1), ("b", 1), ("c", 1)],
            [("a", 2), ("b", 2), ("c", 2)],
        ]
    finally:
        gate.set()
        executor.shutdown(DEADLINE)


def test_many_workers_keep_batches_distinct_bounded_and_in_key_order() -> None:
    recorder = Recorder(lambda items: time.sleep(0.0005 * (len(items) % 3)))
    executor = OrderedBatchExecutor(recorder, max_workers=4, max_pending=1000, max_batch=5)
    keys = [f"key-{k}" for k in range(12)]
    try:
        for n in range(30):
            for key in keys:
                executor.submit(key, (key, n))
        assert executor.wait_idle(DEADLINE)
        assert len(recorder.done) == 30 * len(keys)
        for batch in recorder.batches:
            assert 1 <= len(batch) <= 5
            assert len({key for key, _ in batch}) == len(batch)
        for key in keys:
            assert recorder.done_of(key) == list(range(30))
            # Order holds at hand-out too, not only at completion.
            handed = [n for batch in recorder.batches for k, n in batch if k == key]
            assert handed == list(range(30))
    finally:
        executor.shutdown(DEADLINE)
