"""Open-loop approvals in a process of their own (the upstream service of the e2e benchmark).

``python -m bench.approver --database-url URL --org ORG --orders N --rate R``
approves N demo drafts of organisation ORG on an open-loop schedule (order
``i`` is due at ``start + i / R`` however long earlier approvals took) with
``--threads`` approvers, and prints one line per committed approval:
``<draft order id> <commit time, epoch seconds>``. A process of its own keeps
the approvals' CPU away from the harness's results reader, whose read times
are the other end of every latency.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from entrypoints import bootstrap
from entrypoints.demo_support import demo_order
from producer.approval import approve_draft_order


def approve_open_loop(
    session_factory: Any,
    org_id: uuid.UUID,
    orders: int,
    rate: float,
    threads: int,
    max_seconds: float | None = None,
) -> dict[uuid.UUID, float]:
    """Approve ``orders`` drafts at ``rate``/s (open loop); return each commit time.

    Stops early after ``max_seconds`` (a machine too busy to keep the schedule
    must not stretch the run without bound).
    """
    committed: dict[uuid.UUID, float] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []
    started = time.monotonic() + 0.1

    def approver(first: int) -> None:
        uow = bootstrap.sql_unit_of_work(session_factory=session_factory)
        try:
            for index in range(first, orders, threads):
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    return
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                draft = demo_order(org_id, index + 1)
                approve_draft_order(uow, org_id, draft)
                at = time.time()
                with lock:
                    committed[draft.id] = at
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


def main(argv: Sequence[str] | None = None) -> int:
    """Approve, then print the commit times."""
    parser = argparse.ArgumentParser(prog="python -m bench.approver", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--org", type=uuid.UUID, required=True)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    engine = bootstrap.make_engine(args.database_url)
    try:
        factory = bootstrap.session_factory(engine=engine)
        committed = approve_open_loop(
            factory, args.org, args.orders, args.rate, args.threads, args.max_seconds
        )
    finally:
        engine.dispose()
    sys.stdout.write("".join(f"{order} {at:.6f}\n" for order, at in committed.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
