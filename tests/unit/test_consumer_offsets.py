"""OffsetTracker: only the contiguous prefix of completed messages is released."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from consumer.offsets import OffsetTracker


@dataclass(frozen=True)
class Msg:
    offset: int


P0 = ("t", 0)
P1 = ("t", 1)


def tracker_with(
    *offsets: int, partition: tuple[str, int] = P0
) -> OffsetTracker[tuple[str, int], Msg]:
    tracker: OffsetTracker[tuple[str, int], Msg] = OffsetTracker()
    for offset in offsets:
        tracker.track(partition, Msg(offset))
    return tracker


def test_in_order_completion_releases_each_message() -> None:
    tracker = tracker_with(5, 6, 7)
    assert tracker.complete(P0, Msg(5)) == Msg(5)
    assert tracker.complete(P0, Msg(6)) == Msg(6)
    assert tracker.complete(P0, Msg(7)) == Msg(7)
    assert tracker.in_flight() == 0


def test_out_of_order_completion_waits_for_the_gap() -> None:
    tracker = tracker_with(10, 11, 12, 13)
    assert tracker.complete(P0, Msg(12)) is None
    assert tracker.complete(P0, Msg(11)) is None
    assert tracker.in_flight(P0) == 4
    # The slow first message completes: the whole prefix up to 12 goes at once.
    assert tracker.complete(P0, Msg(10)) == Msg(12)
    assert tracker.in_flight(P0) == 1
    assert tracker.complete(P0, Msg(13)) == Msg(13)


def test_offsets_may_have_gaps_compaction_or_transaction_markers() -> None:
    tracker = tracker_with(3, 7, 20)
    assert tracker.complete(P0, Msg(7)) is None
    assert tracker.complete(P0, Msg(3)) == Msg(7)


def test_partitions_are_independent() -> None:
    tracker = tracker_with(1, 2)
    tracker.track(P1, Msg(1))
    assert tracker.complete(P1, Msg(1)) == Msg(1)
    assert tracker.complete(P0, Msg(2)) is None
    assert tracker.partitions() == [P0]


def test_forgotten_partition_releases_nothing() -> None:
    tracker = tracker_with(1, 2)
    tracker.forget([P0])
    assert tracker.complete(P0, Msg(1)) is None
    assert tracker.in_flight() == 0


def test_unknown_or_repeated_completion_is_ignored() -> None:
    tracker = tracker_with(1, 2)
    assert tracker.complete(P0, Msg(99)) is None
    assert tracker.complete(P0, Msg(1)) == Msg(1)
    assert tracker.complete(P0, Msg(1)) is None


def test_offsets_must_increase_within_a_partition() -> None:
    tracker = tracker_with(5)
    with pytest.raises(ValueError, match="tracked after"):
        tracker.track(P0, Msg(5))
    with pytest.raises(ValueError, match="tracked after"):
        tracker.track(P0, Msg(4))


def test_retracking_after_forget_starts_over() -> None:
    tracker = tracker_with(5, 6)
    tracker.forget([P0])
    tracker.track(P0, Msg(5))  # redelivered after a re-assignment
    assert tracker.complete(P0, Msg(5)) == Msg(5)
