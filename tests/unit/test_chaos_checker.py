"""The chaos checker's counting, on fabricated observations: each count can fail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from chaos.checker import (
    DLQ,
    FAILED,
    REQUESTS,
    RESULTS,
    RETRY,
    RETRYING,
    SUCCESS,
    DropzoneFile,
    Observations,
    PushLogRow,
    WireRecord,
    check,
    wire_duplicates,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Run:
    """A builder of observations: clean orders by default, faults added on purpose."""

    def __init__(self) -> None:
        self.approved: list[uuid.UUID] = []
        self.wire: list[WireRecord] = []
        self.log: list[PushLogRow] = []
        self.files: list[DropzoneFile] = []
        self._offsets: dict[str, int] = {}

    def record(
        self,
        kind: str,
        order: uuid.UUID,
        event_id: uuid.UUID | None,
        attempt: int = 0,
        status: str | None = None,
    ) -> None:
        offset = self._offsets.get(kind, 0)
        self._offsets[kind] = offset + 1
        self.wire.append(WireRecord(kind, 0, offset, order, event_id, attempt, status))

    def order(self, *, retries: int = 0, status: str = SUCCESS) -> uuid.UUID:
        """One order pushed cleanly: request, ``retries`` retry attempts, one result."""
        order = uuid.uuid4()
        self.approved.append(order)
        self.record(REQUESTS, order, uuid.uuid4())
        for attempt in range(retries + 1):
            if attempt:
                self.record(RETRY, order, uuid.uuid4(), attempt)
            last = attempt == retries
            self.log.append(
                PushLogRow(
                    order,
                    attempt,
                    status if last else RETRYING,
                    at(10 * attempt),
                    at(10 * attempt + 1),
                )
            )
        self.record(RESULTS, order, uuid.uuid4(), retries, status)
        if status == SUCCESS:
            self.files.append(DropzoneFile(order, at(10 * retries + 0.5)))
        else:
            self.record(DLQ, order, None, retries)
        return order

    def result_of(self, order: uuid.UUID) -> WireRecord:
        return next(r for r in self.wire if r.kind == RESULTS and r.order_id == order)

    def observations(self) -> Observations:
        return Observations(frozenset(self.approved), self.wire, self.log, self.files)


def test_clean_run_counts_nothing() -> None:
    run = Run()
    run.order()
    run.order(retries=2)
    run.order(retries=1, status=FAILED)
    verdict = check(run.observations())
    assert (verdict.lost, verdict.duplicate_exports, verdict.order_violations) == (0, 0, 0)
    assert verdict.wire_duplicates == 0
    assert (verdict.succeeded, verdict.failed, verdict.files) == (2, 1, 2)
    assert verdict.ok
    assert verdict.line(faults=9) == (
        "chaos: orders=3 lost=0 duplicate_exports=0 order_violations=0 wire_duplicates=0 faults=9"
    )


def test_an_order_without_result_is_lost() -> None:
    run = Run()
    run.order()
    lost = uuid.uuid4()
    run.approved.append(lost)
    run.record(REQUESTS, lost, uuid.uuid4())
    verdict = check(run.observations())
    assert verdict.lost == 1
    assert not verdict.ok
    assert "lost: no PushResult" in verdict.reasons
    assert "lost=1 " in verdict.line(faults=9)


def test_success_without_file_and_failure_without_dead_letter_are_lost() -> None:
    run = Run()
    no_file = run.order()
    run.files = [f for f in run.files if f.order_id != no_file]
    no_letter = run.order(status=FAILED)
    run.wire = [r for r in run.wire if not (r.kind == DLQ and r.order_id == no_letter)]
    verdict = check(run.observations())
    assert verdict.lost == 2
    assert verdict.reasons["lost: SUCCESS but no dropzone file"] == 1
    assert verdict.reasons["lost: FAILED but no dead letter"] == 1


def test_two_success_rows_are_a_double_export() -> None:
    run = Run()
    order = run.order()
    run.log.append(PushLogRow(order, 1, SUCCESS, at(5), at(6)))
    verdict = check(run.observations())
    assert verdict.duplicate_exports == 1
    assert "duplicate_exports: more than one SUCCESS push-log row" in verdict.reasons


def test_a_file_rewritten_after_success_is_a_double_export() -> None:
    run = Run()
    order = run.order()
    run.files = [DropzoneFile(order, at(30), versions=2)]
    verdict = check(run.observations())
    assert verdict.duplicate_exports == 1
    assert verdict.re_uploads == 1


def test_a_re_upload_before_success_is_not_a_double_export() -> None:
    run = Run()
    order = run.order()
    run.files = [DropzoneFile(order, at(0.9), versions=2)]  # before the SUCCESS at +1 s
    verdict = check(run.observations())
    assert verdict.duplicate_exports == 0
    assert verdict.re_uploads == 1
    assert verdict.ok


def test_two_distinct_success_results_are_a_double_export_and_a_violation() -> None:
    run = Run()
    order = run.order()
    run.record(RESULTS, order, uuid.uuid4(), 0, SUCCESS)
    verdict = check(run.observations())
    assert verdict.duplicate_exports == 1
    assert verdict.order_violations == 1
    assert "order_violations: more than one final outcome" in verdict.reasons


def test_a_second_request_of_attempt_zero_is_an_order_violation() -> None:
    run = Run()
    order = run.order()
    run.record(REQUESTS, order, uuid.uuid4())  # a second approval got through
    verdict = check(run.observations())
    assert verdict.order_violations == 1
    assert "order_violations: 2 PushRequested of attempt 0" in verdict.reasons


def test_results_whose_attempts_go_down_are_an_order_violation() -> None:
    run = Run()
    order = run.order(retries=1)
    first = run.result_of(order)
    # An attempt-0 result published after the attempt-1 result of the same key.
    run.record(RESULTS, order, first.event_id, 0, SUCCESS)
    verdict = check(run.observations())
    assert "order_violations: results out of attempt order" in verdict.reasons
    assert verdict.order_violations == 1


def test_a_retry_claimed_before_the_previous_attempt_ended_is_an_order_violation() -> None:
    run = Run()
    order = run.order(retries=1)
    run.log = [
        PushLogRow(order, 0, RETRYING, at(0), at(20)),
        PushLogRow(order, 1, SUCCESS, at(10), at(21)),
    ]
    run.files = [DropzoneFile(order, at(20.5))]
    verdict = check(run.observations())
    assert verdict.reasons == {"order_violations: attempt claimed before the previous ended": 1}


def test_push_log_gaps_and_non_retrying_attempts_are_order_violations() -> None:
    run = Run()
    gap = run.order(retries=2)
    run.log = [row for row in run.log if not (row.order_id == gap and row.attempt == 1)]
    early = run.order(retries=1)
    run.log = [
        PushLogRow(r.order_id, r.attempt, FAILED, r.created_at, r.updated_at)
        if r.order_id == early and r.attempt == 0
        else r
        for r in run.log
    ]
    verdict = check(run.observations())
    assert verdict.order_violations == 2
    assert "order_violations: push-log attempts not 0..k" in verdict.reasons
    assert "order_violations: an attempt before the last is not RETRYING" in verdict.reasons


def test_a_result_that_disagrees_with_the_push_log_is_an_order_violation() -> None:
    run = Run()
    order = run.order(retries=1)
    run.wire = [
        WireRecord(r.kind, r.partition, r.offset, r.order_id, r.event_id, 0, r.status)
        if r.kind == RESULTS and r.order_id == order
        else r
        for r in run.wire
    ]
    verdict = check(run.observations())
    assert verdict.reasons == {"order_violations: result differs from the final push-log row": 1}


def test_wire_duplicates_count_copies_beyond_one_per_event() -> None:
    run = Run()
    order = run.order(retries=1)
    request = next(r for r in run.wire if r.kind == REQUESTS)
    result = run.result_of(order)
    run.record(REQUESTS, order, request.event_id)  # relay re-sent it after a crash
    run.record(RETRY, order, request.event_id)  # deferred copy on a retry tier
    run.record(RESULTS, order, result.event_id, result.attempt, SUCCESS)  # result re-sent
    run.record(DLQ, order, None)  # the DLQ is not counted
    assert wire_duplicates(run.wire) == 3
    verdict = check(run.observations())
    assert verdict.wire_duplicates == 3
    assert (verdict.lost, verdict.duplicate_exports, verdict.order_violations) == (0, 0, 0)
