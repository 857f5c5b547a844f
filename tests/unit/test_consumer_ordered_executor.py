"""OrderedExecutor: same key in order, different keys concurrently, bounded pending count."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest

from consumer.ordered_executor import ExecutorClosed, OrderedExecutor

DEADLINE = 10.0


@pytest.fixture
def executor() -> Iterator[OrderedExecutor]:
    ex = OrderedExecutor(max_workers=4, max_pending=8)
    yield ex
    ex.shutdown(timeout=DEADLINE)


def test_tasks_of_one_key_run_in_submission_order(executor: OrderedExecutor) -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()

    def task(key: str, n: int) -> None:
        time.sleep(0.0005 * ((n * 7) % 3))
        with lock:
            seen[key].append(n)

    for n in range(200):
        for key in ("a", "b", "c"):
            executor.submit(key, lambda key=key, n=n: task(key, n))  # type: ignore[misc]
    assert executor.wait_idle(DEADLINE)
    assert {k: v for k, v in seen.items()} == {k: list(range(200)) for k in "abc"}


def test_one_key_never_runs_two_tasks_at_once(executor: OrderedExecutor) -> None:
    running = 0
    overlap = False
    lock = threading.Lock()

    def task() -> None:
        nonlocal running, overlap
        with lock:
            running += 1
            overlap = overlap or running > 1
        time.sleep(0.002)
        with lock:
            running -= 1

    for _ in range(20):
        executor.submit("same", task)
    assert executor.wait_idle(DEADLINE)
    assert not overlap


def test_different_keys_run_concurrently(executor: OrderedExecutor) -> None:
    barrier = threading.Barrier(3, timeout=DEADLINE)
    passed: list[str] = []

    def task(key: str) -> None:
        barrier.wait()  # only returns if three tasks run at the same time
        passed.append(key)

    for key in ("x", "y", "z"):
        executor.submit(key, lambda key=key: task(key))  # type: ignore[misc]
    assert executor.wait_idle(DEADLINE)
    assert sorted(passed) == ["x", "y", "z"]


def test_slow_key_does_not_block_other_keys(executor: OrderedExecutor) -> None:
    release = threading.Event()
    done: list[str] = []

    def slow() -> None:
        release.wait(DEADLINE)
        done.append("slow")

    executor.submit("slow", slow)
    executor.submit("slow", lambda: done.append("slow-2"))
    for n in range(5):
        executor.submit(f"fast-{n}", lambda n=n: done.append(f"fast-{n}"))  # type: ignore[misc]
    deadline = time.monotonic() + DEADLINE
    while sum(d.startswith("fast") for d in done) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sum(d.startswith("fast") for d in done) == 5
    assert "slow-2" not in done  # still behind the blocked task of its key
    release.set()
    assert executor.wait_idle(DEADLINE)
    assert done.index("slow") < done.index("slow-2")


def test_pending_count_drives_backpressure() -> None:
    executor = OrderedExecutor(max_workers=1, max_pending=4, resume_at=1)
    gate = threading.Event()
    try:
        for n in range(4):
            executor.submit(n, lambda: gate.wait(DEADLINE) and None)
        assert executor.pending == 4
        assert executor.is_full
        assert not executor.has_room
        assert executor.capacity() == 0
        gate.set()
        assert executor.wait_idle(DEADLINE)
        assert executor.has_room
        assert executor.capacity() == 4
    finally:
        gate.set()
        executor.shutdown(DEADLINE)


def test_a_failing_task_does_not_stop_its_key(executor: OrderedExecutor) -> None:
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    executor.submit("k", boom)
    executor.submit("k", lambda: ran.append(2))
    assert executor.wait_idle(DEADLINE)
    assert ran == [2]


def test_shutdown_drains_then_refuses() -> None:
    executor = OrderedExecutor(max_workers=2, max_pending=10)
    ran: list[int] = []

    def step(n: int) -> None:
        time.sleep(0.002)
        ran.append(n)

    for n in range(5):
        executor.submit("k", lambda n=n: step(n))  # type: ignore[misc]
    assert executor.shutdown(DEADLINE)
    assert ran == [0, 1, 2, 3, 4]
    with pytest.raises(ExecutorClosed):
        executor.submit("k", lambda: None)


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        OrderedExecutor(max_workers=0, max_pending=1)
    with pytest.raises(ValueError):
        OrderedExecutor(max_workers=1, max_pending=0)
    with pytest.raises(ValueError):
        OrderedExecutor(max_workers=1, max_pending=2, resume_at=2)
