"""How the CLI prints push-log entries (``orders push``, ``push-log``)."""

from __future__ import annotations

from typing import Any

from domain.records import PushLogEntry


def push_view(entry: PushLogEntry) -> dict[str, Any]:
    """The fields of a push-log entry an operator reads (never a config)."""
    return {
        "idempotency_key": entry.idempotency_key,
        "draft_order_id": str(entry.draft_order_id),
        "status": str(entry.status),
        "push_round": entry.push_round,
        "attempt": entry.attempt,
        "previous_idempotency_key": entry.previous_idempotency_key,
        "connector_type": entry.connector_type,
        "retry_count": entry.retry_count,
        "latency_ms": entry.latency_ms,
        "error_message": entry.error_message,
        "response": entry.response_json,
    }
