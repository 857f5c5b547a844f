"""``orderflow dlq replay``: push failed pushes again, republish the other dead letters.

The records are read by ``entrypoints.dlq_reader`` (no consumer group, up to the
end offsets taken at the start; ``orderflow dlq list`` is its ``list_records``).

Replay decides per record:

* **a failed push** - the value is a decodable ``PushRequested`` whose order
  has push-log history: the order is pushed again through
  ``producer.push_again`` (a new push round under a new idempotency key, if
  its latest round FAILED; skipped, with why, if it was exported or a push is
  in progress). Republishing such a record would do nothing: a FAILED round's
  keys are final.
* **anything else** (undecodable, unknown schema, invalid content, or an
  order the push log never saw) is republished to the topic it came from
  (``original_topic``; a retry tier's record goes back to the requests topic),
  with the original key, value and standard headers byte for byte
  (``attempt`` and ``idempotency_key`` included, so the push log deduplicates
  a replay of an order already exported). The failure headers are not copied
  as such: they are kept as ``replayed_from_<name>`` plus ``replayed_from_dlq``
  (``topic:partition:offset``), so a replayed record is not mistaken for a
  retry. Every republished record waits for the broker's acknowledgement.

The summary lists per record what happened (``results``: ``pushed_again``,
``republished``, ``skipped`` or ``failed``, with the reason and keys).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.kafka.headers import (
    FAILURE_HEADERS,
)
from domain.errors import OrderFlowError
from domain.model import DraftOrder
from entrypoints.dlq_reader import (
    DlqError,
    DlqReader,
    DlqRecord,
    key_text,
    list_records,
    parse_offset,
)
from producer.push_again import CODE_NO_HISTORY, NOTHING_TO_DO, PushAgainOutcome

__all__ = ["DlqError", "DlqReader", "DlqRecord", "list_records", "parse_offset", "replay"]


#: Prefix of the headers that keep a replayed record's failure headers.
REPLAYED_PREFIX = "replayed_from_"
#: Header naming the DLQ record a replay came from (``topic:partition:offset``).
REPLAYED_FROM_DLQ = f"{REPLAYED_PREFIX}dlq"

#: ``action`` of a record republished byte for byte (and acknowledged).
REPUBLISHED = "republished"
#: ``action`` of a record whose republish was not acknowledged.
DELIVERY_FAILED = "failed"
#: ``code`` of a record that cannot be replayed (bad failure headers, unknown topic).
CODE_UNUSABLE = "unusable"

#: Pushes an order again: ``(org_id, draft_order_id, order from the dead letter)``.
PushAgainFn = Callable[[uuid.UUID, uuid.UUID, DraftOrder], PushAgainOutcome]


@dataclass
class ReplaySummary:
    """What a replay did, per record and counted.

    ``replayed``: republished byte for byte and acknowledged; ``pushed_again``:
    a new push round requested; ``skipped`` (with ``code`` and ``reason``);
    ``failed``: republishes not acknowledged. ``results`` has one entry per
    selected record, whatever happened to it.
    """

    replayed: list[dict[str, Any]] = field(default_factory=list)
    pushed_again: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every record was republished, pushed again, or needed nothing.

        "Needed nothing": its order was exported already, or a push of it is in
        progress. A record that cannot be replayed, or a republish not
        acknowledged, makes it False.
        """
        return not self.failed and all(s.get("code") in NOTHING_TO_DO for s in self.skipped)

    def view(self) -> dict[str, Any]:
        """The summary as printed."""
        return {
            "replayed": len(self.replayed),
            "pushed_again": len(self.pushed_again),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "records": self.replayed,
            "skipped_records": self.skipped,
            "failed_records": self.failed,
            "results": sorted(
                self.results, key=lambda e: (e.get("dlq_partition", -1), e.get("dlq_offset", -1))
            ),
        }

    def skip(self, where: Mapping[str, Any], code: str, reason: str, **extra: Any) -> None:
        """Record a skipped record (in ``skipped`` and ``results``)."""
        self.skipped.append({**where, "code": code, "reason": reason})
        self.results.append({**where, **extra, "action": "skipped", "code": code, "reason": reason})


def replay_target(original_topic: str, prefix: str) -> str | None:
    """The topic to replay to: the requests topic for it or a retry tier, else None."""
    from adapters.kafka.topics import TopicNames

    requests = TopicNames(prefix, retry_tiers=0).requests
    if original_topic == requests:
        return requests
    if re.fullmatch(re.escape(prefix) + r"\.push\.retry\.[1-9][0-9]{0,8}", original_topic):
        return requests
    return None


def replay_headers(record: DlqRecord, dlq_topic: str) -> list[tuple[str, bytes | None]]:
    """The original headers (byte for byte, in order) minus failure headers, plus provenance."""
    kept: list[tuple[str, bytes | None]] = []
    failure: list[tuple[str, bytes | None]] = []
    for key, value in record.header_items:
        if key.startswith(REPLAYED_PREFIX):
            continue  # an earlier replay's provenance: replaced by this one's
        if key in FAILURE_HEADERS:
            if key != "due_at":
                failure.append((REPLAYED_PREFIX + key, value))
        else:
            kept.append((key, value))
    where = f"{dlq_topic}:{record.partition}:{record.offset}".encode()
    return [*kept, *failure, (REPLAYED_FROM_DLQ, where)]


def _selected_ranges(
    marks: Mapping[int, tuple[int, int]], offsets: Sequence[tuple[int, int]] | None
) -> dict[int, tuple[int, int]]:
    if offsets is None:
        return dict(marks)
    ranges: dict[int, tuple[int, int]] = {}
    for partition, offset in offsets:
        if partition not in marks:
            raise DlqError(f"the DLQ has no partition {partition}")
        low, high = marks[partition]
        if not low <= offset < high:
            raise DlqError(
                f"no record at {partition}:{offset} (partition {partition} holds {low}..{high - 1})"
                if high > low
                else f"no record at {partition}:{offset} (partition {partition} is empty)"
            )
        start, end = ranges.get(partition, (offset, offset + 1))
        ranges[partition] = (min(start, offset), max(end, offset + 1))
    return ranges


def _keys(record: DlqRecord, order: DraftOrder | None) -> dict[str, Any]:
    """The order and keys of a record for its ``results`` entry (a republish keeps its key)."""
    return {
        "draft_order_id": str(order.id) if order is not None else key_text(record.key),
        "idempotency_key": record.idempotency_key,
        "previous_idempotency_key": None,
    }


def _record_push_again(
    summary: ReplaySummary, where: Mapping[str, Any], record: DlqRecord, outcome: PushAgainOutcome
) -> None:
    keys = {
        "draft_order_id": str(outcome.draft_order_id),
        "idempotency_key": outcome.idempotency_key,
        "previous_idempotency_key": outcome.previous_idempotency_key,
        "dead_letter_idempotency_key": record.idempotency_key,
    }
    if not outcome.pushed_again:
        summary.skip(where, outcome.code, outcome.reason, **keys)
        return
    entry = {
        **where,
        **keys,
        "action": outcome.action,
        "code": outcome.code,
        "reason": outcome.reason,
        "push_round": outcome.push_round,
        "event_id": str(outcome.event.event_id) if outcome.event is not None else None,
    }
    summary.pushed_again.append(entry)
    summary.results.append(entry)


def replay(
    bootstrap_servers: str,
    prefix: str,
    *,
    offsets: Sequence[tuple[int, int]] | None,
    event_id: str | None,
    timeout: float,
    push_again: PushAgainFn | None = None,
) -> ReplaySummary:
    """Replay the selected DLQ records (``offsets``, or all if None, filtered by event id).

    A failed push is pushed again through ``push_again`` (see the module
    docstring; without it every record is republished byte for byte). Waits
    up to ``timeout`` seconds for the acknowledgements. Raises
    :class:`DlqError` before producing anything if a selected offset is not there.
    """
    from adapters.kafka.config import producer_config
    from adapters.kafka.producer import DeliveryReport, EventProducer
    from adapters.kafka.topics import TopicNames

    dlq_topic = TopicNames(prefix, retry_tiers=0).dlq
    wanted = set(offsets) if offsets is not None else None
    summary = ReplaySummary()

    def delivered(report: DeliveryReport) -> None:
        opaque = dict(report.opaque) if isinstance(report.opaque, dict) else {}
        result = opaque.pop("result", {})
        entry = opaque
        if report.ok:
            entry.update(topic=report.topic, partition=report.partition, offset=report.offset)
            summary.replayed.append(entry)
            result.update(action=REPUBLISHED, reason=f"republished to {report.topic}")
        else:
            entry["reason"] = str(report.error)
            summary.failed.append(entry)
            result.update(action=DELIVERY_FAILED, reason=entry["reason"])
        summary.results.append(result)

    producer = EventProducer(
        producer_config(bootstrap_servers, client_id="orderflow-dlq-replay"),
        on_delivery=delivered,
    )
    matched = 0
    with DlqReader(bootstrap_servers, dlq_topic, timeout) as reader:
        marks = reader.watermarks()
        ranges = _selected_ranges(marks, offsets)
        existing = reader.topics()
        for record in reader.read(ranges):
            if wanted is not None and (record.partition, record.offset) not in wanted:
                continue
            if event_id is not None and record.event_id != event_id:
                continue
            matched += 1
            where = {"dlq_partition": record.partition, "dlq_offset": record.offset}
            info, problem = record.failure()
            target = replay_target(info.original_topic, prefix) if info else None
            if info is None or target is None:
                reason = problem or (
                    f"original topic {info.original_topic if info else '?'} is not "
                    f"{prefix}'s requests topic or one of its retry tiers"
                )
                summary.skip(where, CODE_UNUSABLE, reason, **_keys(record, None))
                continue
            order = record.push_request()
            if order is not None and push_again is not None:
                try:
                    outcome = push_again(order.org_id, order.id, order)
                except (OrderFlowError, ValueError) as exc:
                    # This record only: the others are still replayed (and flushed).
                    reason = f"cannot push again: {exc}"
                    summary.skip(where, CODE_UNUSABLE, reason, **_keys(record, order))
                    continue
                if outcome.code != CODE_NO_HISTORY:
                    _record_push_again(summary, where, record, outcome)
                    continue
                # The push log never saw the order: its request is simply republished.
            if target not in existing:
                reason = f"topic {target} does not exist"
                summary.skip(where, CODE_UNUSABLE, reason, **_keys(record, order))
                continue
            opaque = {
                **where,
                "key": key_text(record.key),
                "event_id": record.event_id,
                "result": {**where, **_keys(record, order)},
            }
            producer.produce(
                target, record.key, record.value, replay_headers(record, dlq_topic), opaque=opaque
            )
            producer.poll(0)
    remaining = producer.flush(timeout)
    if event_id is not None and matched == 0:
        raise DlqError(f"no selected DLQ record has event_id {event_id}")
    if remaining:
        summary.failed.append({"reason": f"{remaining} record(s) not acknowledged in {timeout}s"})
    summary.replayed.sort(key=lambda e: (e["dlq_partition"], e["dlq_offset"]))
    return summary
