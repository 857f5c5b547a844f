"""What one ERP call decided, and the rules that turn a connector's answer into it.

:class:`AttemptOutcome` is the classified result of one export (SUCCESS,
RETRYING or FAILED, with a named ``error_class``); the functions here classify
connector errors (retryable ones RETRYING while attempts are left), bound and
clean error text for the push log (no U+0000, at most
:data:`MAX_ERROR_MESSAGE_LENGTH` characters) and find the secret values of a
config, which every message and response is scrubbed of.
:class:`~consumer.push_attempt.PushAttempts` calls them.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.config_schema import ConfigSchema
from domain.model import PushStatus
from domain.ports import ERPConnectorPort, ExportResult
from domain.redaction import scrub, undeclared_secret_values
from domain.retry import RetryPolicy

#: Longest error message stored in the push log (the rest is cut off).
MAX_ERROR_MESSAGE_LENGTH = 2000
#: ``error_class`` of a push that found no ACTIVE connection for its organisation.
NO_ACTIVE_CONNECTION = "NoActiveConnection"
#: ``error_class`` of a push whose connection config could not be decrypted.
CONFIG_NOT_DECRYPTABLE = "ConfigDecryptionError"
#: ``error_class`` of a push whose connection names a connector type nobody registered.
UNKNOWN_CONNECTOR_TYPE = "UnknownConnectorType"

# Config keys treated as secret even if a connector's schema forgets to say so.
_SECRET_KEY_PATTERN = re.compile(
    r"pass|secret|token|api_?key|private|credential|auth", re.IGNORECASE
)


#: A JSON document as stored in a JSONB column.
JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True)
class AttemptOutcome:
    """What one ERP call decided, ready to be recorded.

    ``error_class`` names the failure (a ``ConnectorError`` subclass, or one of
    this module's constants) and is None on SUCCESS; ``error_message`` is
    scrubbed of secrets and bounded.
    """

    status: PushStatus
    error_message: str | None = None
    response_json: dict[str, Any] | None = None
    latency_ms: int | None = None
    error_class: str | None = None

    @property
    def storage_key(self) -> str | None:
        """Where the ERP or dropzone keeps the exported document, if it said."""
        value = (self.response_json or {}).get("storage_key")
        return value if isinstance(value, str) else None

    @property
    def erp_reference(self) -> str | None:
        """The ERP's own reference of the created document, if the connector reported one."""
        metadata = (self.response_json or {}).get("connector_metadata")
        if isinstance(metadata, Mapping):
            for name in ("erp_reference", "erp_order_id"):
                value = metadata.get(name)
                if value is not None:
                    return str(value)
        return None


def failed(message: str, error_class: str) -> AttemptOutcome:
    """A permanent failure named ``error_class`` (message bounded)."""
    return AttemptOutcome(PushStatus.FAILED, bounded(message), error_class=error_class)


def connector_failure(
    message: str,
    error_class: str,
    *,
    retryable: bool,
    attempt: int,
    policy: RetryPolicy,
    latency: int,
) -> AttemptOutcome:
    """RETRYING while a retryable error has attempts left, else FAILED (saying why)."""
    if retryable and policy.may_retry(attempt):
        return AttemptOutcome(
            PushStatus.RETRYING, bounded(message), latency_ms=latency, error_class=error_class
        )
    if retryable:
        message = f"{message} (gave up after {policy.total_attempts} attempts)"
    return AttemptOutcome(
        PushStatus.FAILED, bounded(message), latency_ms=latency, error_class=error_class
    )


def _storable(text: str) -> str:
    """``text`` without U+0000, which PostgreSQL text and JSONB cannot hold.

    What an ERP or a library says ends up in the push log; one NUL in it made
    recording the outcome fail on every redelivery, in front of the partition.
    """
    return text.replace("\x00", "\ufffd")


def bounded(message: str) -> str:
    """``message`` storable and cut to :data:`MAX_ERROR_MESSAGE_LENGTH` characters."""
    message = _storable(message)
    if len(message) <= MAX_ERROR_MESSAGE_LENGTH:
        return message
    return message[: MAX_ERROR_MESSAGE_LENGTH - 1] + "\u2026"


def elapsed_ms(started: float, ended: float) -> int:
    """Whole milliseconds between two monotonic readings (never negative)."""
    return max(0, round((ended - started) * 1000))


def _schema_of(connector: ERPConnectorPort) -> ConfigSchema | None:
    schema = getattr(connector, "config_schema", None)
    return schema if isinstance(schema, ConfigSchema) else None


def secret_keys(connector: ERPConnectorPort, config: Mapping[str, Any]) -> frozenset[str]:
    """Keys whose values are secret: declared, guessed from the name, or (no schema) all."""
    schema = _schema_of(connector)
    if schema is None:
        return frozenset(str(key) for key in config)
    guessed = {key for key in config if _SECRET_KEY_PATTERN.search(str(key))}
    return schema.secret_names | frozenset(guessed)


def secret_values(connector: ERPConnectorPort, config: Mapping[str, Any]) -> list[str]:
    """Every secret value of ``config`` as text, for scrubbing messages."""
    schema = _schema_of(connector)
    if schema is None:
        # Nothing says which values are secret: every one is (see domain.redaction).
        return undeclared_secret_values(config)
    declared = schema.secret_names
    values = [str(config[k]) for k in declared if config.get(k) not in (None, "")]
    # Keys only guessed to be secret count if their value is text: scrubbing
    # "True" or "1" out of every message would garble them for nothing.
    values += [
        v
        for k, v in config.items()
        if k not in declared and _SECRET_KEY_PATTERN.search(str(k)) and isinstance(v, str) and v
    ]
    return values


def _json_ready(value: object) -> JsonValue:
    """Return ``value`` with UUIDs, decimals and datetimes as strings (JSONB-safe)."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON (and JSONB) has no NaN or Infinity
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def export_response(result: ExportResult) -> dict[str, JsonValue]:
    """The JSON-ready response of an ``ExportResult`` (for the push log)."""
    response: dict[str, JsonValue] = {
        "success": result.success,
        "export_id": _json_ready(result.export_id),
        "storage_key": result.storage_key,
        "connector_metadata": _json_ready(dict(result.connector_metadata)),
    }
    if result.error_message:
        response["error_message"] = result.error_message
    return response


def scrubbed_json(value: JsonValue, secrets: list[str]) -> JsonValue:
    """Scrub secret values (and U+0000) out of every string of a JSON-ready value."""
    if isinstance(value, dict):
        return {_storable(k): scrubbed_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrubbed_json(v, secrets) for v in value]
    if isinstance(value, str):
        return _storable(scrub(value, secrets))
    return value
