"""Open-loop approvals in a process of their own (the upstream service of the e2e benchmark).

``python -m bench.approver --database-url URL --org ORG --orders N --rate R``
approves N demo drafts of organisation ORG on an open-loop schedule (order
``i`` is due at ``start + i / R`` however long earlier approvals took) with
``--threads`` approvers, and prints one line per committed approval:
``<draft order id> <call time> <return time> <start lateness, ms>`` (epoch
seconds when ``approve_draft_order`` was called and when it returned, after its
COMMIT; the lateness is how long after its due time the approval started: the
approver's own queueing), then ``# cpu_s <seconds>``
(the process's CPU time while it approved: the interpreter's start-up and
imports are left out, as the relay's and worker's CPU is counted over the
window only). ``--rate 0`` approves as fast as it can (closed
loop: the approver's capacity). A process of its own keeps the approvals' CPU
away from the harness's results reader, whose read times are the other end of
every latency.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from entrypoints import bootstrap
from entrypoints.demo_support import demo_order
from producer.approval import approve_draft_order


@dataclass(frozen=True)
class Approval:
    """One committed approval: when it was called and returned, how late it started.

    The end-to-end latency runs from ``called_at``: a time taken after the call
    returns can be later than the moment its result is readable (the thread may
    be descheduled right after the COMMIT), which once put an order at -30 ms.
    """

    called_at: float
    returned_at: float
    late_ms: float


def approve_open_loop(
    session_factory: Any,
    org_id: uuid.UUID,
    orders: int,
    rate: float,
    threads: int,
    max_seconds: float | None = None,
) -> dict[uuid.UUID, Approval]:
    """Approve ``orders`` drafts at ``rate``/s (open loop; 0: no pacing); return each approval.

    Stops early after ``max_seconds`` (a machine too busy to keep the schedule
    must not stretch the run without bound).
    """
    committed: dict[uuid.UUID, Approval] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []
    started = time.monotonic() + 0.1

    def approver(first: int) -> None:
        uow = bootstrap.sql_unit_of_work(session_factory=session_factory)
        try:
            for index in range(first, orders, threads):
                now = time.monotonic()
                if max_seconds is not None and now - started > max_seconds:
                    return
                due = started + index / rate if rate > 0 else now
                if due > now:
                    time.sleep(due - now)
                late_ms = max(0.0, time.monotonic() - due) * 1000
                draft = demo_order(org_id, index + 1)
                # Before the call: certainly before its COMMIT makes the order visible.
                called = time.time()
                approve_draft_order(uow, org_id, draft)
                returned = time.time()
                with lock:
                    committed[draft.id] = Approval(called, returned, late_ms)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=approver, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return committed


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    """Approve, then print the commit times."""
    parser = argparse.ArgumentParser(prog="python -m bench.approver", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--org", type=uuid.UUID, required=True)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="approvals/s; 0: no pacing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    engine = bootstrap.make_engine(args.database_url)
    before = _cpu_seconds()
    try:
        factory = bootstrap.session_factory(engine=engine)
        committed = approve_open_loop(
            factory, args.org, args.orders, args.rate, args.threads, args.max_seconds
        )
    finally:
        engine.dispose()
    cpu_s = _cpu_seconds() - before
    sys.stdout.write(
        "".join(
            f"{order} {a.called_at:.6f} {a.returned_at:.6f} {a.late_ms:.3f}\n"
            for order, a in committed.items()
        )
    )
    sys.stdout.write(f"# cpu_s {cpu_s:.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
