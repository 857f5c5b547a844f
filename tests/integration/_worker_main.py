"""``python -m tests.integration._worker_main ARGS``: the push worker process, instrumented.

Runs exactly what ``orderflow consume ARGS`` runs (``entrypoints.cli``: the
``consume`` command's click options, then ``entrypoints.worker_process``: wiring,
signal handlers, drain, commit), plus two test hooks set by environment variables:

* ``ORDERFLOW_TEST_EXPORT_JOURNAL=PATH``: every ERP call appends one line when it
  starts and one when it ends (``start|end ORDER_ID ATTEMPT PID [STATUS]``), with
  ``O_APPEND`` single writes, so several worker processes share one journal and
  its line order is the real order of the calls. ``end ... SUCCESS`` lines are the
  exports; a call cut short by SIGKILL leaves a ``start`` without its ``end``.
* ``ORDERFLOW_TEST_KILL_AFTER_SUCCESSES=N``: right after the batch holding the
  N-th SUCCESS outcome was committed to the database (push log + outbox), the
  process SIGKILLs itself: the crash lands after the DB commit and before the
  record's offset is even stored, let alone committed. A ``killed ORDER_ID
  ATTEMPT PID`` line is journaled first.

Every worker started this way also uses a 6 s group session timeout (the broker's
minimum), so a SIGKILLed member is replaced in seconds rather than 45.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from consumer.push_attempt import AttemptOutcome, Claim, OutcomeToRecord, PushAttempts
from domain.model import DraftOrder, PushStatus
from domain.records import PushLogEntry
from domain.retry import RetryPolicy
from entrypoints import cli, worker_process
from entrypoints.process_args import ServiceOptions

JOURNAL_ENV = "ORDERFLOW_TEST_EXPORT_JOURNAL"
KILL_ENV = "ORDERFLOW_TEST_KILL_AFTER_SUCCESSES"
#: librdkafka settings of the test workers: notice a SIGKILLed member quickly.
CONSUMER_EXTRA = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


def _journal(line: str) -> None:
    path = os.environ.get(JOURNAL_ENV)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _instrument() -> None:
    worker_config = worker_process.worker_config

    def with_short_session(services: ServiceOptions, **flags: Any) -> worker_process.WorkerConfig:
        return replace(worker_config(services, **flags), consumer_extra=dict(CONSUMER_EXTRA))

    setattr(worker_process, "worker_config", with_short_session)  # noqa: B010 - a test hook
    call_erp = PushAttempts.call_erp
    record_outcomes = PushAttempts.record_outcomes
    kill_after = int(os.environ.get(KILL_ENV) or 0)
    lock = threading.Lock()
    successes = [0]

    def journaled_call_erp(
        self: PushAttempts, claim: Claim, order: DraftOrder, attempt: int, policy: RetryPolicy
    ) -> AttemptOutcome:
        _journal(f"start {order.id} {attempt}")
        outcome = call_erp(self, claim, order, attempt, policy)
        _journal(f"end {order.id} {attempt} {outcome.status.value}")
        return outcome

    def record_then_maybe_die(
        self: PushAttempts, outcomes: Sequence[OutcomeToRecord]
    ) -> list[PushLogEntry | None]:
        recorded = record_outcomes(self, outcomes)
        if not kill_after:
            return recorded
        for item, row in zip(outcomes, recorded, strict=True):
            if row is None or item.outcome.status is not PushStatus.SUCCESS:
                continue
            with lock:
                successes[0] += 1
                if successes[0] >= kill_after:
                    entry = item.claim.entry
                    _journal(f"killed {entry.draft_order_id} {entry.attempt}")
                    os.kill(os.getpid(), signal.SIGKILL)
        return recorded

    setattr(PushAttempts, "call_erp", journaled_call_erp)  # noqa: B010 - a test hook
    setattr(PushAttempts, "record_outcomes", record_then_maybe_die)  # noqa: B010


def main(argv: Sequence[str] | None = None) -> Any:
    """Instrument, then run the real worker entry point (``orderflow consume``)."""
    _instrument()
    return cli.main(["consume", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
