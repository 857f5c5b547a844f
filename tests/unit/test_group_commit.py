"""GroupCommitter: concurrent callers share batches; each gets its own result or the error."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from consumer.group_commit import GroupCommitClosed, GroupCommitError, GroupCommitter


class FakeStore:
    """A flush function that records its batches and can be held or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_with: Exception | None = None

    def flush(self, items: list[int]) -> Sequence[int]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(list(items))
        if self.fail_with is not None:
            raise self.fail_with
        return [item * 10 for item in items]


def call_all(committer: GroupCommitter[int, int], items: Sequence[int]) -> dict[int, object]:
    """Call ``committer`` from one thread per item; return each item's result or exception."""
    results: dict[int, object] = {}

    def one(item: int) -> None:
        try:
            results[item] = committer.call(item)
        except Exception as exc:
            results[item] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_a_lone_item_is_written_at_once_and_gets_its_result() -> None:
    store = FakeStore()
    committer: GroupCommitter[int, int] = GroupCommitter(store.flush)
    try:
        assert committer.call(4) == 40
        assert store.batches == [[4]]
    finally:
        committer.close()


def test_items_queued_while_a_batch_is_in_flight_share_the_next_batch() -> None:
    store = FakeStore()
    store.gate.clear()
    committer: GroupCommitter[int, int] = GroupCommitter(store.flush)
    try:
        first = threading.Thread(target=committer.call, args=(0,))
        first.start()
        assert store.entered.wait(5)  # batch [0] is in flight and held
        waiting = threading.Thread(target=lambda: results.update(call_all(committer, range(1, 9))))
        results: dict[int, object] = {}
        waiting.start()
        while len(committer._queue) < 8:  # all eight queued behind the held batch
            threading.Event().wait(0.01)
        store.gate.set()
        waiting.join(10)
        first.join(10)
    finally:
        committer.close()
    assert store.batches == [[0], list(range(1, 9))]
    assert results == {i: i * 10 for i in range(1, 9)}


def test_max_batch_splits_a_long_queue() -> None:
    store = FakeStore()
    store.gate.clear()
    committer: GroupCommitter[int, int] = GroupCommitter(store.flush, max_batch=3)
    try:
        first = threading.Thread(target=committer.call, args=(0,))
        first.start()
        assert store.entered.wait(5)
        results: dict[int, object] = {}
        waiting = threading.Thread(target=lambda: results.update(call_all(committer, range(1, 8))))
        waiting.start()
        while len(committer._queue) < 7:
            threading.Event().wait(0.01)
        store.gate.set()
        waiting.join(10)
        first.join(10)
    finally:
        committer.close()
    assert [len(b) for b in store.batches] == [1, 3, 3, 1]
    assert results == {i: i * 10 for i in range(1, 8)}


def test_a_failed_batch_fails_every_caller_of_that_batch_with_its_cause() -> None:
    store = FakeStore()
    store.gate.clear()
    committer: GroupCommitter[int, int] = GroupCommitter(store.flush)
    try:
        store.fail_with = OSError("connection reset")
        results = {}
        worker = threading.Thread(target=lambda: results.update(call_all(committer, range(6))))
        worker.start()
        while len(committer._queue) + len(store.batches) == 0 and not store.entered.is_set():
            threading.Event().wait(0.01)
        store.gate.set()
        worker.join(10)
        assert len(results) == 6
        for error in results.values():
            assert isinstance(error, GroupCommitError)
            assert isinstance(error.__cause__, OSError)
            assert "connection reset" in str(error)
        # Each caller has its own exception object (tracebacks are not spliced).
        assert len({id(e) for e in results.values()}) == 6
        # The committer goes on with later batches.
        store.fail_with = None
        assert committer.call(7) == 70
    finally:
        committer.close()


def test_a_wrong_number_of_results_fails_the_batch() -> None:
    committer: GroupCommitter[int, int] = GroupCommitter(lambda items: [])
    try:
        with pytest.raises(GroupCommitError, match="0 results for 1 items"):
            committer.call(1)
    finally:
        committer.close()


def test_several_flush_functions_write_batches_concurrently() -> None:
    first, second = FakeStore(), FakeStore()
    first.gate.clear()
    second.gate.clear()
    committer: GroupCommitter[int, int] = GroupCommitter([first.flush, second.flush])
    try:
        results: dict[int, object] = {}
        one = threading.Thread(target=lambda: results.update(call_all(committer, [1])))
        one.start()
        while not (first.entered.is_set() or second.entered.is_set()):
            threading.Event().wait(0.01)
        two = threading.Thread(target=lambda: results.update(call_all(committer, [2])))
        two.start()
        # Both batches are in flight at once, one per flush function.
        assert first.entered.wait(5)
        assert second.entered.wait(5)
        first.gate.set()
        second.gate.set()
        one.join(10)
        two.join(10)
    finally:
        committer.close()
    assert results == {1: 10, 2: 20}
    assert sorted(first.batches + second.batches) == [[1], [2]]


def test_close_writes_what_is_queued_then_refuses_new_items() -> None:
    store = FakeStore()
    committer: GroupCommitter[int, int] = GroupCommitter(store.flush)
    assert committer.call(1) == 10
    committer.close()
    with pytest.raises(GroupCommitClosed):
        committer.call(2)
    assert committer.batches == 1
    assert committer.items == 1
