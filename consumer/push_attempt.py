"""One push attempt, shared by the synchronous orchestrator and the Kafka push worker.

:class:`PushAttempts` holds the steps every push of a draft order goes
through, whoever drives it:

* :meth:`PushAttempts.acquire` - claim the attempt's ``erp_push_log`` row
  (PENDING, with a lease) and *commit it before the ERP is called*; an expired
  claim of a dead worker is taken over. Losing the race returns the winner's
  row and no claim.
* :meth:`PushAttempts.call_erp` - resolve the decrypted config of the ACTIVE
  connection resolved at claim time, take the connector from the registry,
  call ``export`` through the port and classify the outcome: SUCCESS,
  RETRYING (a retryable error with attempts left: ``ConnectorTransientError``,
  a plain ``ConnectorError`` or any other exception the connector lets escape,
  unless it says ``retryable=False``) or FAILED (``ConnectorConfigError``,
  ``ConnectorRejectedError``, ``ConnectorSecurityError``, an unsuccessful
  ``ExportResult``, retries exhausted, no connection, undecryptable config,
  unknown type). Error messages are scrubbed of every secret value of the
  config and bounded (the rules: :mod:`consumer.attempt_outcome`).

Recording the outcome is left to the caller: the orchestrator updates the
push log alone, the push worker updates it together with an outbox event in
one transaction.

Size: a little over 400 lines, the claim, the ERP call and the outcome of one
attempt side by side (their outcome classification is ``attempt_outcome``).
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Protocol

from consumer.attempt_outcome import (
    CONFIG_NOT_DECRYPTABLE,
    MAX_ERROR_MESSAGE_LENGTH,
    NO_ACTIVE_CONNECTION,
    UNKNOWN_CONNECTOR_TYPE,
    AttemptOutcome,
    JsonValue,
    bounded,
    connector_failure,
    elapsed_ms,
    export_response,
    failed,
    scrubbed_json,
    secret_keys,
    secret_values,
)
from domain.errors import ConnectorError
from domain.idempotency import generate_idempotency_key as _generate_key
from domain.model import DraftOrder, PushStatus
from domain.ports import ERPConnectorPort
from domain.push_writes import ClaimGrant
from domain.records import ConnectionRecord, OutboxEvent, PushLogEntry, order_to_json, utc_now
from domain.redaction import RedactedConfig, scrub
from domain.repositories import UnitOfWork
from domain.retry import RetryPolicy

logger = logging.getLogger("consumer.push_service")

#: How long a claimed attempt is protected from take-over by another worker.
#: Must exceed the slowest connector call (connector timeouts are far lower).
DEFAULT_LEASE_SECONDS = 300.0
#: Decrypted connection configs a :class:`PushAttempts` keeps (one per connection
#: and ciphertext; the worker has one ``PushAttempts`` per thread).
DECRYPTED_CONFIGS_KEPT = 64

__all__ = [
    "CONFIG_NOT_DECRYPTABLE",
    "DEFAULT_LEASE_SECONDS",
    "MAX_ERROR_MESSAGE_LENGTH",
    "NO_ACTIVE_CONNECTION",
    "UNKNOWN_CONNECTOR_TYPE",
    "AttemptOutcome",
    "BatchedWrites",
    "Claim",
    "ConfigDecryptor",
    "ConnectorLookup",
    "JsonValue",
    "PushAttempts",
]


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
        """Decrypt a config blob: bound to (org_id, connector_type), or unbound (any context)."""
        ...


class BatchedWrites(Protocol):
    """Claims and outcomes written in statements shared between threads (group commit)."""

    def claim(self, entry: PushLogEntry) -> ClaimGrant:
        """Insert the PENDING ``entry`` the quick way (see ``ClaimRequest``); committed."""
        ...

    def record(
        self,
        entry: PushLogEntry,
        outcome: AttemptOutcome,
        events: Sequence[OutboxEvent],
        now: datetime,
    ) -> bool:
        """Record the outcome with its events if ``entry`` is PENDING; committed."""
        ...


@dataclass(frozen=True)
class Claim:
    """An attempt this worker owns, with the connection resolved at claim time."""

    entry: PushLogEntry
    connection: ConnectionRecord | None


class PushAttempts:
    """Claims push attempts and calls the ERP for them (see the module docstring).

    ``clock`` gives aware UTC datetimes, ``monotonic`` seconds for latency.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        registry: ConnectorLookup,
        cipher: ConfigDecryptor,
        *,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        batched: BatchedWrites | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        self.uow = uow
        self.registry = registry
        self.cipher = cipher
        self.clock = clock or utc_now
        self.monotonic = monotonic or time.perf_counter
        self.lease = timedelta(seconds=lease_seconds)
        self.batched = batched
        # (connection id, org, connector type, ciphertext) -> decrypted config. Decrypting
        # (AES-GCM, JSON) on every export was a tenth of the worker's Python time per
        # record at 0 ms ERP latency. The ciphertext is part of the key, so a changed
        # config is decrypted anew; the cache is bounded, private (no repr shows it)
        # and read-only (``MappingProxyType``: one export cannot alter the next one's).
        self._configs: dict[tuple[Any, ...], Mapping[str, Any]] = {}

    def quick_claim(
        self,
        org: uuid.UUID,
        order: DraftOrder,
        attempt: int,
        *,
        now: datetime | None = None,
        push_round: int = 0,
    ) -> Claim | None:
        """Claim a new key of an order without history in one statement, if batched.

        ``None`` (nothing written) when there is no batched store, or when the
        key exists or the order has history the full logic must look at
        (:meth:`acquire` and the push worker's deferral rules then decide).
        """
        if self.batched is None:
            return None
        entry = self.pending_entry(org, order, attempt, now=now, push_round=push_round)
        grant = self.batched.claim(entry)
        if not grant.claimed:
            return None
        connection = grant.connection
        connector_type = connection.connector_type if connection is not None else None
        return Claim(replace(entry, connector_type=connector_type), connection)

    def pending_entry(
        self,
        org: uuid.UUID,
        order: DraftOrder,
        attempt: int,
        *,
        connector_type: str | None = None,
        now: datetime | None = None,
        push_round: int = 0,
        previous_idempotency_key: str | None = None,
    ) -> PushLogEntry:
        """The PENDING row that claims ``attempt`` of ``order``'s round ``push_round`` now."""
        now = now or self.clock()
        return PushLogEntry.pending(
            org_id=org,
            draft_order_id=order.id,
            idempotency_key=_generate_key(org, order.id, attempt, push_round=push_round),
            attempt=attempt,
            now=now,
            lease_expires_at=now + self.lease,
            connector_type=connector_type,
            request_json=order_to_json(order),
            push_round=push_round,
            previous_idempotency_key=previous_idempotency_key,
        )

    def acquire(
        self,
        org: uuid.UUID,
        order: DraftOrder,
        attempt: int,
        *,
        push_round: int = 0,
        previous_idempotency_key: str | None = None,
    ) -> tuple[PushLogEntry, Claim | None]:
        """Return the attempt's row and, if this worker now owns it, the claim.

        A row without a lease (a requested push again, see ``producer.push_again``)
        is taken like an expired claim. ``previous_idempotency_key`` is written
        only if the row is inserted here.
        """
        key = _generate_key(org, order.id, attempt, push_round=push_round)
        with self.uow as uow:
            now = self.clock()
            connection = uow.connections.get_active(org)
            # Claim first: a new key (the common case) then costs no lookup before it;
            # ON CONFLICT DO NOTHING leaves an existing row alone.
            claimed = uow.push_log.claim(
                self.pending_entry(
                    org,
                    order,
                    attempt,
                    connector_type=connection.connector_type if connection else None,
                    now=now,
                    push_round=push_round,
                    previous_idempotency_key=previous_idempotency_key,
                )
            )
            if claimed is not None:
                # Committed before the ERP call: from now on nobody else
                # calls the ERP for this key while the lease lives.
                uow.commit()
                return claimed, Claim(claimed, connection)
            existing = uow.push_log.find(key)  # the earlier or winning row (committed)
            if existing is not None and existing.lease_expired(now):
                taken = uow.push_log.take_over(
                    key,
                    now=now,
                    lease_expires_at=now + self.lease,
                    connector_type=connection.connector_type if connection else None,
                )
                if taken is not None:
                    uow.commit()
                    if existing.lease_expires_at is None:
                        logger.info("Took the requested push again %s", key)
                    else:
                        logger.warning("Took over the expired claim %s", key)
                    return taken, Claim(taken, connection)
                existing = uow.push_log.find(key)
        if existing is None:  # pragma: no cover - the conflicting row was deleted
            raise RuntimeError(f"Push log row {key} vanished while claiming it")
        return existing, None

    def record_outcome(
        self,
        claim: Claim,
        outcome: AttemptOutcome,
        events: Sequence[OutboxEvent] = (),
        *,
        now: datetime | None = None,
    ) -> PushLogEntry | None:
        """Write a claimed attempt's outcome and its outbox ``events`` in one transaction.

        ``now`` (default: the clock) is the row's ``updated_at``: the handler passes
        the time its events were built at, which a retry's due time counts from.

        Returns the updated row, or ``None`` when the row is no longer PENDING
        (our lease expired and another worker recorded the attempt first; its
        outcome stands and ``events`` are not written). With a batched store
        the write shares one statement with other threads' outcomes (still one
        transaction, committed before this returns).
        """
        now = now or self.clock()
        if self.batched is not None:
            if not self.batched.record(claim.entry, outcome, events, now):
                return None
            return replace(
                claim.entry,
                status=outcome.status,
                response_json=outcome.response_json,
                error_message=outcome.error_message,
                latency_ms=outcome.latency_ms,
                updated_at=now,
                lease_expires_at=None,
            )
        with self.uow as uow:
            recorded = uow.push_log.update_outcome(
                claim.entry.id,
                status=outcome.status,
                now=now,
                response_json=outcome.response_json,
                error_message=outcome.error_message,
                latency_ms=outcome.latency_ms,
            )
            if recorded is not None:
                for event in events:
                    uow.outbox.add(event)
            uow.commit()
        return recorded

    def _decrypted(self, connection: ConnectionRecord) -> Mapping[str, Any]:
        """The decrypted config of ``connection`` (cached; a failure is not cached)."""
        key = (
            connection.id,
            connection.org_id,
            connection.connector_type,
            connection.config_encrypted,
        )
        config = self._configs.get(key)
        if config is None:
            config = MappingProxyType(
                dict(
                    self.cipher.decrypt_config(
                        connection.config_encrypted,
                        org_id=connection.org_id,
                        connector_type=connection.connector_type,
                    )
                )
            )
            if len(self._configs) >= DECRYPTED_CONFIGS_KEPT:
                self._configs.clear()  # rare (that many connections): simply start over
            self._configs[key] = config
        return config

    def call_erp(
        self, claim: Claim, order: DraftOrder, attempt: int, policy: RetryPolicy
    ) -> AttemptOutcome:
        """Call the ERP for a claimed attempt and classify the outcome (nothing is recorded)."""
        connection = claim.connection
        if connection is None:
            return failed(
                f"No active ERP connection for organisation {order.org_id}", NO_ACTIVE_CONNECTION
            )
        connector_type = connection.connector_type
        try:
            config = self._decrypted(connection)
        except Exception as exc:  # any failure to decrypt is permanent for this blob
            return failed(
                f"Could not decrypt the {connector_type} connection config of organisation "
                f"{connection.org_id}: {type(exc).__name__}: {exc}",
                CONFIG_NOT_DECRYPTABLE,
            )
        try:
            connector = self.registry.get(connector_type)
        except ValueError as exc:
            return failed(str(exc), UNKNOWN_CONNECTOR_TYPE)

        secrets = secret_values(connector, config)
        redacted = RedactedConfig(config, secret_keys(connector, config))
        started = self.monotonic()
        try:
            result = connector.export(order, redacted)
        except ConnectorError as exc:
            latency = elapsed_ms(started, self.monotonic())
            return connector_failure(
                scrub(exc.message, secrets),
                type(exc).__name__,
                retryable=exc.retryable,
                attempt=attempt,
                policy=policy,
                latency=latency,
            )
        except Exception as exc:
            # Whatever a connector lets escape is treated like a plain ConnectorError:
            # retried (a seed-style connector's timeout may surface as anything). Logged
            # with its traceback, scrubbed: the exception text may echo config values.
            latency = elapsed_ms(started, self.monotonic())
            trace = scrub("".join(traceback.format_exception(exc)), secrets)
            logger.error(
                "Connector %s raised %s unexpectedly (attempt %d):\n%s",
                connector_type,
                type(exc).__name__,
                attempt,
                trace,
            )
            return connector_failure(
                scrub(f"Unexpected {type(exc).__name__} in {connector_type}: {exc}", secrets),
                type(exc).__name__,
                retryable=True,
                attempt=attempt,
                policy=policy,
                latency=latency,
            )
        latency = elapsed_ms(started, self.monotonic())
        response = {k: scrubbed_json(v, secrets) for k, v in export_response(result).items()}
        if not result.success:
            message = scrub(result.error_message or f"{connector_type} reported failure", secrets)
            return AttemptOutcome(
                PushStatus.FAILED, bounded(message), response, latency, "ConnectorRejectedError"
            )
        return AttemptOutcome(PushStatus.SUCCESS, None, response, latency)
