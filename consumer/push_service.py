"""``PushOrchestrator``: the seed's synchronous push with idempotency and retries.

One push of a draft order is a sequence of attempts ``n = 0 .. max_retries``.
Each attempt has its own ``erp_push_log`` row, keyed by
``generate_idempotency_key(org, order, n)``, and goes through:

1. **dedupe** - a SUCCESS row for (org, order) ends the push at once: the
   ERP is called at most once per order. A finished row for the attempt's key
   is reused (FAILED is returned, RETRYING moves on to attempt ``n + 1``); a
   row PENDING under a live lease belongs to another worker, which is left
   alone (the PENDING entry is returned).
2. **claim** - a PENDING row with a lease is inserted and *committed before
   the ERP is called*; losing the insert race means someone else owns the
   attempt. A PENDING row whose lease expired (its worker died) is taken over.
3. **call** - the organisation's ACTIVE connection is decrypted (associated
   data binds the blob to org and connector type) and passed to
   ``ConnectorRegistry.get(type).export()`` through the port.
4. **record** - SUCCESS (with the export's metadata), RETRYING (a transient
   error with retries left: wait ``retry_delay(n, base)`` and go on) or
   FAILED (permanent error, retries exhausted, no connection, undecryptable
   config, unknown connector type).

``request_json`` holds the order payload only; error messages are scrubbed of
every secret value of the config. The plaintext config lives only in memory
during the call.

The orchestrator commits its own transactions: when built from a session
(``PushOrchestrator(db_session)``), that session must not hold uncommitted
work the caller wants to keep.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from domain.errors import ConnectorError
from domain.idempotency import generate_idempotency_key as _generate_key
from domain.model import DraftOrder, PushStatus
from domain.ports import ERPConnectorPort, ExportResult
from domain.records import ConnectionRecord, PushLogEntry, order_to_json, utc_now
from domain.redaction import RedactedConfig, scrub
from domain.repositories import UnitOfWork
from domain.retry import RetryPolicy, retry_delay

logger = logging.getLogger(__name__)

#: How long a claimed attempt is protected from take-over by another worker.
#: Must exceed the slowest connector call (connector timeouts are far lower).
DEFAULT_LEASE_SECONDS = 300.0
#: Longest error message stored in the push log (the rest is cut off).
MAX_ERROR_MESSAGE_LENGTH = 2000

# Config keys treated as secret even if a connector's schema forgets to say so.
_SECRET_KEY_PATTERN = re.compile(
    r"pass|secret|token|api_?key|private|credential|auth", re.IGNORECASE
)


#: A JSON document as stored in a JSONB column.
JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


class ConnectorLookup(Protocol):
    """What the orchestrator needs of ``ConnectorRegistry``."""

    def get(self, connector_type: str, /) -> ERPConnectorPort:
        """Return a connector for ``connector_type``; ``ValueError`` if unknown."""
        ...


class ConfigDecryptor(Protocol):
    """What the orchestrator needs of ``ConfigCipher`` / ``EncryptionService``."""

    def decrypt_config(
        self, blob: bytes, /, *, org_id: uuid.UUID, connector_type: str
    ) -> Mapping[str, Any]:
        """Decrypt a config blob bound to (org_id, connector_type)."""
        ...


@dataclass(frozen=True)
class _Claim:
    """An attempt this orchestrator owns, with the connection resolved at claim time."""

    entry: PushLogEntry
    connection: ConnectionRecord | None


@dataclass(frozen=True)
class _Outcome:
    status: PushStatus
    error_message: str | None = None
    response_json: dict[str, Any] | None = None
    latency_ms: int | None = None


class PushOrchestrator:
    """Pushes draft orders to the organisation's ERP, exactly once, with retries.

    ``PushOrchestrator(db_session)`` builds its collaborators from the
    composition root (``entrypoints.bootstrap``); every one can be injected
    instead: ``uow`` (a ``domain.repositories.UnitOfWork``, replacing
    ``db_session``), ``registry``, ``cipher``, ``sleep`` (seconds),
    ``clock`` (aware UTC ``datetime``), ``monotonic`` (seconds, for latency).
    """

    def __init__(
        self,
        db_session: object = None,
        *,
        uow: UnitOfWork | None = None,
        registry: ConnectorLookup | None = None,
        cipher: ConfigDecryptor | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        if uow is None and db_session is None:
            raise TypeError("PushOrchestrator needs a db_session or a uow")
        if uow is None or registry is None or cipher is None:
            # Imported lazily: consumer/ must not depend on adapters at import
            # time; the composition root knows which adapters to use.
            from entrypoints import bootstrap

            uow = uow if uow is not None else bootstrap.unit_of_work_for_session(db_session)
            registry = registry if registry is not None else bootstrap.default_registry()
            cipher = cipher if cipher is not None else bootstrap.default_cipher()
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        self.uow: UnitOfWork = uow
        self.registry: ConnectorLookup = registry
        self.cipher: ConfigDecryptor = cipher
        self._sleep = sleep or time.sleep
        self._clock = clock or utc_now
        self._monotonic = monotonic or time.perf_counter
        self._lease = timedelta(seconds=lease_seconds)

    # -- the seed's API -------------------------------------------------------

    @staticmethod
    def generate_idempotency_key(
        org_id: uuid.UUID | str, order_id: uuid.UUID | str, attempt: int = 0
    ) -> str:
        """Return the key of one push attempt (same inputs, same key)."""
        return _generate_key(org_id, order_id, attempt)

    def check_idempotency(self, key: str) -> PushLogEntry | None:
        """Return the push log entry of ``key`` if it was processed (or claimed), else None."""
        with self.uow as uow:
            return uow.push_log.find(key)

    def push_order(
        self,
        org_id: uuid.UUID | str,
        draft_order: DraftOrder,
        max_retries: int = 3,
        retry_delay_base: float = 1.0,
    ) -> PushLogEntry:
        """Push ``draft_order`` to the organisation's ERP; return the deciding log entry.

        The result's ``status`` is ``"SUCCESS"`` or ``"FAILED"``; it is
        ``"PENDING"`` if another worker holds the attempt right now, and
        ``"RETRYING"`` only if earlier calls already used up the attempts this
        call may make (``max_retries``) without finishing the push.
        """
        policy = RetryPolicy(max_retries=max_retries, retry_delay_base=retry_delay_base)
        org = uuid.UUID(str(org_id))
        if draft_order.org_id != org:
            raise ValueError(
                f"Draft order {draft_order.id} belongs to organisation "
                f"{draft_order.org_id}, not {org}"
            )
        with self.uow as uow:
            done = uow.push_log.find_success(org, draft_order.id)
        if done is not None:
            logger.info("Draft order %s already pushed (%s)", draft_order.id, done.idempotency_key)
            return done

        latest: PushLogEntry | None = None
        resumed = False
        for attempt in range(policy.total_attempts):
            if latest is not None:
                self._wait_for_retry(latest, attempt - 1, policy.retry_delay_base, resumed)
            entry, claim = self._acquire(org, draft_order, attempt)
            if claim is not None:
                entry = self._run(claim, draft_order, attempt, policy)
            if entry.status is not PushStatus.RETRYING:
                return entry
            latest, resumed = entry, claim is None
        assert latest is not None  # total_attempts >= 1 and every path sets it
        return latest

    # -- steps ----------------------------------------------------------------

    def _wait_for_retry(
        self, previous: PushLogEntry, attempt: int, base: float, resumed: bool
    ) -> None:
        """Sleep ``retry_delay(attempt, base)`` before the next attempt.

        When ``previous`` (RETRYING) was written by an earlier call, only what
        is left of the delay since it was written is waited.
        """
        delay = retry_delay(attempt, base)
        due = previous.retry_due_at(delay)
        if resumed and due is not None:
            delay = max(0.0, min(delay, (due - self._clock()).total_seconds()))
        if delay > 0:
            logger.info("Retrying %s in %.1f s", previous.idempotency_key, delay)
            self._sleep(delay)

    def _acquire(
        self, org: uuid.UUID, order: DraftOrder, attempt: int
    ) -> tuple[PushLogEntry, _Claim | None]:
        """Return the attempt's row and, if this orchestrator now owns it, the claim."""
        key = _generate_key(org, order.id, attempt)
        with self.uow as uow:
            now = self._clock()
            existing = uow.push_log.find(key)
            if existing is None:
                connection = uow.connections.get_active(org)
                claimed = uow.push_log.claim(
                    PushLogEntry.pending(
                        org_id=org,
                        draft_order_id=order.id,
                        idempotency_key=key,
                        attempt=attempt,
                        now=now,
                        lease_expires_at=now + self._lease,
                        connector_type=connection.connector_type if connection else None,
                        request_json=order_to_json(order),
                    )
                )
                if claimed is not None:
                    # Committed before the ERP call: from now on nobody else
                    # calls the ERP for this key while the lease lives.
                    uow.commit()
                    return claimed, _Claim(claimed, connection)
                existing = uow.push_log.find(key)  # the winner's row (committed)
            elif existing.lease_expired(now):
                taken = uow.push_log.take_over(key, now=now, lease_expires_at=now + self._lease)
                if taken is not None:
                    connection = uow.connections.get_active(org)
                    uow.commit()
                    logger.warning("Took over the expired claim %s", key)
                    return taken, _Claim(taken, connection)
                existing = uow.push_log.find(key)
        if existing is None:  # pragma: no cover - the conflicting row was deleted
            raise RuntimeError(f"Push log row {key} vanished while claiming it")
        return existing, None

    def _run(
        self, claim: _Claim, order: DraftOrder, attempt: int, policy: RetryPolicy
    ) -> PushLogEntry:
        """Call the ERP for a claimed attempt and record the outcome."""
        outcome = self._call_erp(claim, order, attempt, policy)
        with self.uow as uow:
            recorded = uow.push_log.update_outcome(
                claim.entry.id,
                status=outcome.status,
                now=self._clock(),
                response_json=outcome.response_json,
                error_message=outcome.error_message,
                latency_ms=outcome.latency_ms,
            )
            if recorded is None:
                # Our lease expired and another worker finished the attempt
                # first; its outcome stands.
                recorded = uow.push_log.get(claim.entry.id)
            uow.commit()
        if recorded is None:  # pragma: no cover - the row was deleted meanwhile
            raise RuntimeError(f"Push log row {claim.entry.idempotency_key} vanished")
        logger.info(
            "Push %s: %s%s",
            recorded.idempotency_key,
            recorded.status.value,
            f" ({recorded.error_message})" if recorded.error_message else "",
        )
        return recorded

    def _call_erp(
        self, claim: _Claim, order: DraftOrder, attempt: int, policy: RetryPolicy
    ) -> _Outcome:
        connection = claim.connection
        if connection is None:
            return _failed(f"No active ERP connection for organisation {order.org_id}")
        connector_type = connection.connector_type
        try:
            config = self.cipher.decrypt_config(
                connection.config_encrypted,
                org_id=connection.org_id,
                connector_type=connector_type,
            )
        except Exception as exc:  # any failure to decrypt is permanent for this blob
            return _failed(
                f"Could not decrypt the {connector_type} connection config of organisation "
                f"{connection.org_id}: {type(exc).__name__}: {exc}"
            )
        try:
            connector = self.registry.get(connector_type)
        except ValueError as exc:
            return _failed(str(exc))

        secrets = _secret_values(connector, config)
        redacted = RedactedConfig(config, _secret_keys(connector, config))
        started = self._monotonic()
        try:
            result = connector.export(order, redacted)
        except ConnectorError as exc:
            latency = _elapsed_ms(started, self._monotonic())
            message = scrub(exc.message, secrets)
            if exc.retryable and policy.may_retry(attempt):
                return _Outcome(PushStatus.RETRYING, _bounded(message), latency_ms=latency)
            if exc.retryable:
                message = f"{message} (gave up after {policy.total_attempts} attempts)"
            return _Outcome(PushStatus.FAILED, _bounded(message), latency_ms=latency)
        except Exception as exc:
            # A connector bug: not retried blindly (DESIGN: unknown means permanent).
            latency = _elapsed_ms(started, self._monotonic())
            logger.exception("Connector %s raised unexpectedly", connector_type)
            message = scrub(f"Unexpected {type(exc).__name__} in {connector_type}: {exc}", secrets)
            return _Outcome(PushStatus.FAILED, _bounded(message), latency_ms=latency)
        latency = _elapsed_ms(started, self._monotonic())
        response = {k: _scrubbed_json(v, secrets) for k, v in _export_response(result).items()}
        if not result.success:
            message = scrub(result.error_message or f"{connector_type} reported failure", secrets)
            return _Outcome(PushStatus.FAILED, _bounded(message), response, latency)
        return _Outcome(PushStatus.SUCCESS, None, response, latency)


# -- helpers ------------------------------------------------------------------


def _failed(message: str) -> _Outcome:
    return _Outcome(PushStatus.FAILED, _bounded(message))


def _bounded(message: str) -> str:
    if len(message) <= MAX_ERROR_MESSAGE_LENGTH:
        return message
    return message[: MAX_ERROR_MESSAGE_LENGTH - 1] + "\u2026"


def _elapsed_ms(started: float, ended: float) -> int:
    return max(0, round((ended - started) * 1000))


def _secret_keys(connector: ERPConnectorPort, config: Mapping[str, Any]) -> frozenset[str]:
    schema = getattr(connector, "config_schema", None)
    declared: frozenset[str] = getattr(schema, "secret_names", frozenset())
    guessed = {key for key in config if _SECRET_KEY_PATTERN.search(str(key))}
    return frozenset(declared) | frozenset(guessed)


def _secret_values(connector: ERPConnectorPort, config: Mapping[str, Any]) -> list[str]:
    """Every secret value of ``config`` as text, for scrubbing messages."""
    schema = getattr(connector, "config_schema", None)
    declared: frozenset[str] = getattr(schema, "secret_names", frozenset())
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


def _export_response(result: ExportResult) -> dict[str, JsonValue]:
    response: dict[str, JsonValue] = {
        "success": result.success,
        "export_id": _json_ready(result.export_id),
        "storage_key": result.storage_key,
        "connector_metadata": _json_ready(dict(result.connector_metadata)),
    }
    if result.error_message:
        response["error_message"] = result.error_message
    return response


def _scrubbed_json(value: JsonValue, secrets: list[str]) -> JsonValue:
    """Scrub secret values out of every string of a JSON-ready value."""
    if isinstance(value, dict):
        return {k: _scrubbed_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed_json(v, secrets) for v in value]
    if isinstance(value, str):
        return scrub(value, secrets)
    return value
