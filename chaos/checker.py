"""The chaos run's verdict: pure counting over what was observed from the outside.

Nothing here does I/O. :mod:`chaos.observe` collects the observations (the
results, requests, retry and DLQ topics read from the beginning, the push log
rows, the files of the dropzone); :func:`check` turns them into a
:class:`Verdict` whose :meth:`Verdict.line` is the harness's last line.

Definitions (per draft order the harness approved):

* **final outcome** - a ``PushResult`` on the results topic (distinct
  ``event_id``; copies of one result are wire duplicates) backed by a final
  push-log row (SUCCESS or FAILED).
* **lost** - no final outcome; or SUCCESS but no file in the dropzone; or
  FAILED but no dead letter on the DLQ (nothing left to replay).
* **duplicate export** - more than one SUCCESS push-log row, more than one
  distinct SUCCESS ``PushResult``, more than one dropzone file, or a file
  written *after* the SUCCESS was recorded (its mtime is later than the SUCCESS
  row's ``updated_at``: the order was exported again once it was done). A
  re-upload *before* the SUCCESS (a worker killed between upload and commit,
  its claim taken over) is the idempotent connector doing its job: counted as
  ``re_uploads``, not as a duplicate.
* **order violation** - the order's events are out of sequence: not exactly
  one ``PushRequested`` of attempt 0 (one approval, one request); push-log
  attempts not ``0..k`` with every attempt but the last RETRYING; attempt
  ``n+1`` claimed before attempt ``n``'s outcome was recorded; more than one
  distinct final outcome; results of the order whose attempt numbers go down
  as their offsets go up; a result whose attempt or status differs from the
  push log's final row.
* **wire duplicates** - records on the requests, retry and results topics
  beyond one per distinct event (re-sends after a relay crash, redeliveries,
  deferred copies): allowed, counted.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import TypeVar

_T = TypeVar("_T")

#: Topic kinds of :class:`WireRecord`.
REQUESTS = "requests"
RETRY = "retry"
RESULTS = "results"
DLQ = "dlq"

SUCCESS = "SUCCESS"
FAILED = "FAILED"
RETRYING = "RETRYING"
FINAL_STATUSES = frozenset({SUCCESS, FAILED})


@dataclass(frozen=True)
class WireRecord:
    """One record read from a topic of the run (``kind`` is one of the constants above)."""

    kind: str
    partition: int
    offset: int
    order_id: uuid.UUID
    #: The event's id (value field, else header); None when unreadable (DLQ raw bytes).
    event_id: uuid.UUID | None
    attempt: int
    #: ``PushResult.status`` on the results topic, else None.
    status: str | None = None


@dataclass(frozen=True)
class PushLogRow:
    """One ``erp_push_log`` row of the run's organisation."""

    order_id: uuid.UUID
    attempt: int
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DropzoneFile:
    """One order file of the dropzone (hidden temporary files excluded)."""

    order_id: uuid.UUID
    mtime: datetime
    #: Distinct files (inodes) seen at this path while the run went on (>= 1).
    versions: int = 1


@dataclass(frozen=True)
class Observations:
    """Everything the checker looks at."""

    approved: frozenset[uuid.UUID]
    wire: Sequence[WireRecord]
    push_log: Sequence[PushLogRow]
    files: Sequence[DropzoneFile]


@dataclass(frozen=True)
class Verdict:
    """The counts of a chaos run (and why each order was counted)."""

    orders: int
    lost: int
    duplicate_exports: int
    order_violations: int
    wire_duplicates: int
    succeeded: int = 0
    failed: int = 0
    files: int = 0
    re_uploads: int = 0
    dlq_records: int = 0
    records: Mapping[str, int] = field(default_factory=dict)
    #: reason -> number of orders, for the summary table.
    reasons: Mapping[str, int] = field(default_factory=dict)
    #: A few example order ids per reason, for debugging a red run.
    examples: Mapping[str, Sequence[uuid.UUID]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing exported twice, nothing out of order."""
        return self.lost == 0 and self.duplicate_exports == 0 and self.order_violations == 0

    def line(self, faults: int) -> str:
        """The machine-readable last line of the harness."""
        return (
            f"chaos: orders={self.orders} lost={self.lost} "
            f"duplicate_exports={self.duplicate_exports} "
            f"order_violations={self.order_violations} "
            f"wire_duplicates={self.wire_duplicates} faults={faults}"
        )


class _Tally:
    """Orders counted per category, with the reasons that put them there."""

    def __init__(self) -> None:
        self.orders: dict[str, set[uuid.UUID]] = defaultdict(set)
        self.reasons: Counter[str] = Counter()
        self.examples: dict[str, list[uuid.UUID]] = defaultdict(list)

    def add(self, category: str, reason: str, order: uuid.UUID) -> None:
        self.orders[category].add(order)
        self.reasons[f"{category}: {reason}"] += 1
        examples = self.examples[f"{category}: {reason}"]
        if len(examples) < 3:
            examples.append(order)

    def count(self, category: str) -> int:
        return len(self.orders[category])


def wire_duplicates(records: Iterable[WireRecord]) -> int:
    """Records on the requests, retry and results topics beyond one per distinct event.

    Requests and retry tiers share one id space (a deferred request keeps its
    ``event_id``); results have their own. A record without an id counts as
    distinct.
    """
    total = 0
    seen: set[tuple[str, uuid.UUID]] = set()
    unnamed = 0
    for record in records:
        if record.kind == DLQ:
            continue
        total += 1
        if record.event_id is None:
            unnamed += 1
            continue
        space = RESULTS if record.kind == RESULTS else REQUESTS
        seen.add((space, record.event_id))
    return total - len(seen) - unnamed


def _by_order(items: Iterable[_T], key: str) -> dict[uuid.UUID, list[_T]]:
    grouped: dict[uuid.UUID, list[_T]] = defaultdict(list)
    for item in items:
        grouped[getattr(item, key)].append(item)
    return grouped


def check(observed: Observations) -> Verdict:
    """Count lost orders, duplicate exports, order violations and wire duplicates."""
    tally = _Tally()
    wire = _by_order(observed.wire, "order_id")
    log = _by_order(observed.push_log, "order_id")
    files = _by_order(observed.files, "order_id")
    succeeded = failed = re_uploads = 0
    for order in sorted(observed.approved):
        records = wire.get(order, [])
        results = sorted((r for r in records if r.kind == RESULTS), key=lambda r: r.offset)
        rows = sorted(log.get(order, []), key=lambda r: r.attempt)
        order_files = files.get(order, [])
        re_uploads += sum(max(0, f.versions - 1) for f in order_files)
        outcomes: dict[uuid.UUID | None, WireRecord] = {}
        for result in results:
            outcomes.setdefault(result.event_id, result)
        final = rows[-1] if rows and rows[-1].status in FINAL_STATUSES else None

        # --- lost ---
        if not outcomes:
            tally.add("lost", "no PushResult", order)
        if final is None:
            tally.add("lost", "no final push-log row", order)
        elif final.status == SUCCESS:
            succeeded += 1
            if not order_files:
                tally.add("lost", "SUCCESS but no dropzone file", order)
        else:
            failed += 1
            if not any(r.kind == DLQ for r in records):
                tally.add("lost", "FAILED but no dead letter", order)

        # --- duplicate exports ---
        successes = [r for r in rows if r.status == SUCCESS]
        if len(successes) > 1:
            tally.add("duplicate_exports", "more than one SUCCESS push-log row", order)
        if sum(1 for r in outcomes.values() if r.status == SUCCESS) > 1:
            tally.add("duplicate_exports", "more than one SUCCESS PushResult", order)
        if len(order_files) > 1:
            tally.add("duplicate_exports", "more than one dropzone file", order)
        if successes and any(f.mtime > successes[0].updated_at for f in order_files):
            tally.add("duplicate_exports", "file written again after SUCCESS", order)

        # --- order violations ---
        requests = {r.event_id for r in records if r.kind in (REQUESTS, RETRY) and r.attempt == 0}
        if len(requests) != 1:
            tally.add("order_violations", f"{len(requests)} PushRequested of attempt 0", order)
        if [r.attempt for r in rows] != list(range(len(rows))):
            tally.add("order_violations", "push-log attempts not 0..k", order)
        if any(r.status != RETRYING for r in rows[:-1]):
            tally.add("order_violations", "an attempt before the last is not RETRYING", order)
        if any(later.created_at < earlier.updated_at for earlier, later in pairwise(rows)):
            tally.add("order_violations", "attempt claimed before the previous ended", order)
        if len(outcomes) > 1:
            tally.add("order_violations", "more than one final outcome", order)
        if any(b.attempt < a.attempt for a, b in pairwise(results)):
            tally.add("order_violations", "results out of attempt order", order)
        if final is not None and any(
            r.attempt != final.attempt or r.status != final.status for r in outcomes.values()
        ):
            tally.add("order_violations", "result differs from the final push-log row", order)

    kinds = Counter(r.kind for r in observed.wire)
    return Verdict(
        orders=len(observed.approved),
        lost=tally.count("lost"),
        duplicate_exports=tally.count("duplicate_exports"),
        order_violations=tally.count("order_violations"),
        wire_duplicates=wire_duplicates(observed.wire),
        succeeded=succeeded,
        failed=failed,
        files=sum(len(v) for k, v in files.items() if k in observed.approved),
        re_uploads=re_uploads,
        dlq_records=kinds.get(DLQ, 0),
        records=dict(kinds),
        reasons=dict(sorted(tally.reasons.items())),
        examples={k: tuple(v) for k, v in sorted(tally.examples.items())},
    )
