"""Pushing a FAILED draft order again, once the cause of its failure is fixed.

A push of a draft order is a *round* of attempts ``0..k`` under keys of its own
(``domain.idempotency``). A FAILED round is final: its keys never run again,
so republishing its request does nothing. :func:`push_again` is the one way
to push such an order again (``orderflow orders retry`` and ``orderflow dlq
replay`` both call it). In ONE transaction it reads the order's push log and:

* a SUCCESS in any round -> skipped: the order is never exported twice;
* no push-log row -> skipped: nothing failed (yet) to push again;
* the latest round unfinished (PENDING or RETRYING) -> skipped: a push is in
  progress;
* the latest round FAILED -> round ``r + 1`` is requested: the PENDING row of
  its attempt 0, *without a lease* and linked to round r's final key
  (``previous_idempotency_key``), and a ``PushRequested`` outbox event of
  attempt 0 under the round's key (as ``build_push_requested`` makes it),
  which the relay publishes like any event. The push worker takes the row
  (a row without a lease is free to take) and runs the round as a fresh chain.

Two concurrent calls cannot both start round ``r + 1``: its key is unique in
the push log, so the second insert waits for the first transaction and then
finds the key taken (that call reports "in progress" and writes nothing).

The order pushed again is the ``draft_order`` row if the order was approved
here, else the one the failed round recorded (``request_json``), else the
``order`` the caller passes (e.g. the dead letter's value).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from domain.model import DraftOrder, DraftOrderStatus, PushStatus
from domain.records import OutboxEvent, PushLogEntry, order_from_json, order_to_json, utc_now
from domain.repositories import UnitOfWork
from producer.approval import build_push_requested

#: ``action`` of an outcome that requested a new push round.
PUSHED_AGAIN = "pushed_again"
#: ``action`` of an outcome that wrote nothing (``code`` and ``reason`` say why).
SKIPPED = "skipped"

#: ``code``: a new round was requested.
CODE_PUSHED_AGAIN = "pushed_again"
#: ``code``: the order was exported (SUCCESS); it is never pushed again.
CODE_ALREADY_PUSHED = "already_pushed"
#: ``code``: the latest round is still running (or a push again waits for the worker).
CODE_IN_PROGRESS = "in_progress"
#: ``code``: the push log has no row of the order: nothing failed to push again.
CODE_NO_HISTORY = "no_history"
#: ``code``: nowhere to read the order from (no draft order, no request recorded).
CODE_NO_ORDER = "no_order"

#: Codes that mean "nothing to do" rather than "cannot" (commands exit 0 on them).
NOTHING_TO_DO = frozenset({CODE_ALREADY_PUSHED, CODE_IN_PROGRESS})


@dataclass(frozen=True)
class PushAgainOutcome:
    """What :func:`push_again` did for one order.

    ``idempotency_key`` is the new round's key (pushed again) or the key that
    decided the skip (the SUCCESS, the unfinished attempt); ``push_round`` the
    round it belongs to; ``previous_idempotency_key`` the failed round's final
    key the new round links to. ``event`` is the outbox event written, if any.
    """

    org_id: uuid.UUID
    draft_order_id: uuid.UUID
    action: str
    code: str
    reason: str
    idempotency_key: str | None = None
    push_round: int | None = None
    previous_idempotency_key: str | None = None
    order_source: str | None = None
    event: OutboxEvent | None = field(default=None, repr=False)

    @property
    def pushed_again(self) -> bool:
        """True if a new push round was requested."""
        return self.action == PUSHED_AGAIN

    @property
    def ok(self) -> bool:
        """True if pushed again, or if there was nothing to do (already pushed, in progress)."""
        return self.pushed_again or self.code in NOTHING_TO_DO

    def view(self) -> dict[str, Any]:
        """The outcome as the commands print it."""
        return {
            "org_id": str(self.org_id),
            "draft_order_id": str(self.draft_order_id),
            "action": self.action,
            "code": self.code,
            "reason": self.reason,
            "idempotency_key": self.idempotency_key,
            "push_round": self.push_round,
            "previous_idempotency_key": self.previous_idempotency_key,
            "order_source": self.order_source,
            "event_id": str(self.event.event_id) if self.event is not None else None,
        }


def push_again(
    uow: UnitOfWork,
    org_id: uuid.UUID | str,
    draft_order_id: uuid.UUID | str,
    *,
    clock: Callable[[], datetime] = utc_now,
    order: DraftOrder | None = None,
    traceparent: str | None = None,
) -> PushAgainOutcome:
    """Push the order again if its latest push round FAILED (see the module docstring).

    ``order`` is the fallback copy of the order (used only when neither a
    ``draft_order`` row nor the push log holds it); it must be the same order
    (``ValueError`` otherwise). ``traceparent`` continues the caller's trace.
    """
    org = uuid.UUID(str(org_id))
    order_id = uuid.UUID(str(draft_order_id))
    if order is not None and (order.org_id, order.id) != (org, order_id):
        raise ValueError(f"The fallback order is {order.org_id}/{order.id}, not {org}/{order_id}")

    def skipped(code: str, reason: str, entry: PushLogEntry | None = None) -> PushAgainOutcome:
        return PushAgainOutcome(
            org,
            order_id,
            SKIPPED,
            code,
            reason,
            idempotency_key=entry.idempotency_key if entry else None,
            push_round=entry.push_round if entry else None,
        )

    now = clock()
    with uow:
        history = uow.push_log.list_for_order(org, order_id)
        success = next((e for e in history if e.status is PushStatus.SUCCESS), None)
        if success is not None:
            return skipped(
                CODE_ALREADY_PUSHED,
                f"already pushed: SUCCESS under key {success.idempotency_key}"
                f"{_at(success.updated_at)}; it is never pushed again",
                success,
            )
        if not history:
            return skipped(
                CODE_NO_HISTORY,
                f"no push attempt of draft order {order_id} in organisation {org} is recorded: "
                "nothing failed to push again (a request on its way is pushed when it arrives)",
            )
        latest_round = max(e.push_round for e in history)
        last = max((e for e in history if e.push_round == latest_round), key=lambda e: e.attempt)
        if last.status is not PushStatus.FAILED:
            return skipped(CODE_IN_PROGRESS, _in_progress(last), last)
        found = _order_to_push(uow, org, order_id, history, order)
        if found is None:
            return skipped(
                CODE_NO_ORDER,
                f"draft order {order_id} is not stored here and its push log holds no "
                "readable request: pass the order (dlq replay of its dead letter)",
                last,
            )
        to_push, source = found
        new_round = latest_round + 1
        event = build_push_requested(
            replace(to_push, status=DraftOrderStatus.APPROVED),
            occurred_at=now,
            traceparent=traceparent,
            push_round=new_round,
        )
        key = event.headers["idempotency_key"]
        requested = PushLogEntry.pending(
            org_id=org,
            draft_order_id=order_id,
            idempotency_key=key,
            attempt=0,
            now=now,
            lease_expires_at=None,  # nobody holds it: the first worker to see it takes it
            request_json=order_to_json(to_push),
            push_round=new_round,
            previous_idempotency_key=last.idempotency_key,
        )
        if uow.push_log.claim(requested) is None:
            # A concurrent call requested this round first (the key is unique).
            return skipped(
                CODE_IN_PROGRESS,
                f"a push again of draft order {order_id} (key {key}) was requested by "
                "another call at the same time",
            )
        stored = uow.outbox.add(event)
        uow.commit()
    return PushAgainOutcome(
        org,
        order_id,
        PUSHED_AGAIN,
        CODE_PUSHED_AGAIN,
        f"round {latest_round} FAILED ({last.error_message or 'no message'}): pushing again "
        f"as round {new_round}",
        idempotency_key=key,
        push_round=new_round,
        previous_idempotency_key=last.idempotency_key,
        order_source=source,
        event=stored,
    )


def _at(when: datetime | None) -> str:
    return f" at {when.isoformat()}" if when is not None else ""


def _in_progress(last: PushLogEntry) -> str:
    if last.status is PushStatus.PENDING and last.lease_expires_at is None:
        return (
            f"a push is in progress: the push again {last.idempotency_key} was requested"
            f"{_at(last.created_at)} and waits for the push worker"
        )
    return f"a push is in progress: {last.idempotency_key} is {last.status.value}"


def _order_to_push(
    uow: UnitOfWork,
    org: uuid.UUID,
    order_id: uuid.UUID,
    history: Sequence[PushLogEntry],
    fallback: DraftOrder | None,
) -> tuple[DraftOrder, str] | None:
    """The order to push and where it came from: draft_order, push_log or given."""
    stored = uow.draft_orders.get(org, order_id)
    if stored is not None and stored.status is DraftOrderStatus.APPROVED:
        return stored, "draft_order"
    # Upstream requests have no draft_order row: the push log recorded the order.
    for entry in sorted(history, key=lambda e: (e.push_round, e.attempt), reverse=True):
        if entry.request_json is None:
            continue
        try:
            recorded = order_from_json(entry.request_json)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            continue  # an unreadable copy: try an older one, then the fallback
        if (recorded.org_id, recorded.id) == (org, order_id):
            return recorded, "push_log"
    if fallback is not None:
        return fallback, "given"
    return None
