"""Idempotency keys: the same (org, draft order, attempt) always gives the same key."""

from __future__ import annotations

import uuid

KEY_PREFIX = "erp-push"


def generate_idempotency_key(
    org_id: uuid.UUID | str, draft_order_id: uuid.UUID | str, attempt: int = 0
) -> str:
    """Return the idempotency key of one push attempt.

    Ids are normalised through ``uuid.UUID`` so that ``str`` and ``UUID``
    inputs (and upper/lower case hex) give the same key.
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError(f"attempt must be a non-negative integer, got {attempt!r}")
    org = uuid.UUID(str(org_id))
    order = uuid.UUID(str(draft_order_id))
    return f"{KEY_PREFIX}:{org}:{order}:{attempt}"


def export_key(org_id: uuid.UUID | str, draft_order_id: uuid.UUID | str) -> str:
    """Return the stable key of the ERP document for (org, draft order).

    Every attempt of the same draft order uses it, so a connector can find a
    document it created before and not create a second one.
    """
    return f"{uuid.UUID(str(org_id))}:{uuid.UUID(str(draft_order_id))}"
