"""Idempotency keys: the same (org, draft order, push round, attempt) always gives the same key.

A push of a draft order is a *round*: attempts ``0..k`` under one key each.
Round 0 is the first push; when it ended FAILED and its cause was fixed, a
push again (``producer.push_again``) starts round ``r + 1`` at attempt 0,
under keys of its own, so the FAILED keys of the earlier round stay final.

* round 0: ``erp-push:<org_id>:<draft_order_id>:<attempt>`` (the seed's form);
* round r >= 1: ``erp-push:<org_id>:<draft_order_id>:r<round>:<attempt>``.

:func:`parse_idempotency_key` reads either form back, so whoever holds a key
(the worker, a retry tier, a result) can tell its round.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

KEY_PREFIX = "erp-push"
#: Marks the round in a key of round >= 1 (``...:r2:0``).
ROUND_MARK = "r"

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_KEY = re.compile(
    rf"{KEY_PREFIX}:(?P<org>{_UUID}):(?P<order>{_UUID}):"
    rf"(?:{ROUND_MARK}(?P<round>[1-9][0-9]{{0,8}}):)?(?P<attempt>0|[1-9][0-9]{{0,8}})"
)


def _non_negative(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def generate_idempotency_key(
    org_id: uuid.UUID | str,
    draft_order_id: uuid.UUID | str,
    attempt: int = 0,
    *,
    push_round: int = 0,
) -> str:
    """Return the idempotency key of one push attempt.

    Ids are normalised through ``uuid.UUID`` so that ``str`` and ``UUID``
    inputs (and upper/lower case hex) give the same key. ``push_round`` 0
    (the default) gives the seed's form; a later round carries ``r<round>``.
    """
    _non_negative("attempt", attempt)
    _non_negative("push_round", push_round)
    org = uuid.UUID(str(org_id))
    order = uuid.UUID(str(draft_order_id))
    if push_round == 0:
        return f"{KEY_PREFIX}:{org}:{order}:{attempt}"
    return f"{KEY_PREFIX}:{org}:{order}:{ROUND_MARK}{push_round}:{attempt}"


@dataclass(frozen=True)
class IdempotencyKey:
    """The parts of an idempotency key (see :func:`parse_idempotency_key`)."""

    org_id: uuid.UUID
    draft_order_id: uuid.UUID
    push_round: int
    attempt: int

    def __str__(self) -> str:
        return generate_idempotency_key(
            self.org_id, self.draft_order_id, self.attempt, push_round=self.push_round
        )


def parse_idempotency_key(key: str) -> IdempotencyKey:
    """Return the parts of a key made by :func:`generate_idempotency_key`.

    Raises ``ValueError`` naming the expected forms if ``key`` is neither.
    """
    match = _KEY.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        raise ValueError(
            f"not an idempotency key: expected {KEY_PREFIX}:<org_id>:<draft_order_id>:<attempt> "
            f"or {KEY_PREFIX}:<org_id>:<draft_order_id>:{ROUND_MARK}<round>:<attempt>"
        )
    return IdempotencyKey(
        org_id=uuid.UUID(match["org"]),
        draft_order_id=uuid.UUID(match["order"]),
        push_round=int(match["round"] or 0),
        attempt=int(match["attempt"]),
    )


def export_key(org_id: uuid.UUID | str, draft_order_id: uuid.UUID | str) -> str:
    """Return the stable key of the ERP document for (org, draft order).

    Every attempt of the same draft order uses it, so a connector can find a
    document it created before and not create a second one.
    """
    return f"{uuid.UUID(str(org_id))}:{uuid.UUID(str(draft_order_id))}"
