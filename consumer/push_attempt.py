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

* :meth:`PushAttempts.record_outcomes` - write claimed attempts' outcomes,
  each with its outbox events, in one statement.

Every claim and outcome goes through ONE port, the
:class:`~domain.push_writes.PushLogWriter`: the push worker hands it whole
batches (:meth:`PushAttempts.claim_fresh` and :meth:`record_outcomes` for
every record of a batch), the synchronous ``PushService`` batches of one.

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
from domain.push_writes import ClaimRequest, OutcomeWrite, PushLogWriter
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


@dataclass(frozen=True)
class Claim:
    """An attempt this worker owns, with the connection resolved at claim time."""

    entry: PushLogEntry
    connection: ConnectionRecord | None


@dataclass(frozen=True, slots=True)
class AttemptToClaim:
    """Attempt ``attempt`` of ``order``'s push round ``push_round``, to be claimed at ``now``."""

    org_id: uuid.UUID
    order: DraftOrder
    attempt: int
    now: datetime
    push_round: int = 0


@dataclass(frozen=True, slots=True)
class OutcomeToRecord:
    """A claimed attempt's outcome, its outbox events and the time that is its ``updated_at``."""

    claim: Claim
    outcome: AttemptOutcome
    events: Sequence[OutboxEvent]
    now: datetime


class PushAttempts:
    """Claims push attempts and calls the ERP for them (see the module docstring).

    ``writer`` writes every claim and outcome; ``uow`` reads the push log and
    takes over expired claims. ``clock`` gives aware UTC datetimes,
    ``monotonic`` seconds for latency.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        registry: ConnectorLookup,
        cipher: ConfigDecryptor,
        *,
        writer: PushLogWriter,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        self.uow = uow
        self.registry = registry
        self.cipher = cipher
        self.clock = clock or utc_now
        self.monotonic = monotonic or time.perf_counter
        self.lease = timedelta(seconds=lease_seconds)
        self.writer = writer
        # (connection id, org, connector type, ciphertext) -> decrypted config. Decrypting
        # (AES-GCM, JSON) on every export was a tenth of the worker's Python time per
        # record at 0 ms ERP latency. The ciphertext is part of the key, so a changed
        # config is decrypted anew; the cache is bounded, private (no repr shows it)
        # and read-only (``MappingProxyType``: one export cannot alter the next one's).
        self._configs: dict[tuple[Any, ...], Mapping[str, Any]] = {}

    def close(self) -> None:
        """Release the writer's connection (after the last attempt)."""
        self.writer.close()

    def claim_fresh(self, attempts: Sequence[AttemptToClaim]) -> list[Claim | None]:
        """Claim, in one statement, each new key of an order without history.

        Per attempt: its :class:`Claim`, or ``None`` (nothing written) when the
        key exists or the order has history the full logic must look at
        (:meth:`acquire` and the push worker's deferral rules then decide).
        The attempts must have distinct keys.
        """
        if not attempts:
            return []  # a batch of dead letters only: no statement
        entries = [
            self.pending_entry(a.org_id, a.order, a.attempt, now=a.now, push_round=a.push_round)
            for a in attempts
        ]
        grants = self.writer.claim_many([ClaimRequest(entry) for entry in entries])
        claims: list[Claim | None] = []
        for entry, grant in zip(entries, grants, strict=True):
            if not grant.claimed:
                claims.append(None)
                continue
            connection = grant.connection
            connector_type = connection.connector_type if connection is not None else None
            claims.append(Claim(replace(entry, connector_type=connector_type), connection))
        return claims

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
        now = self.clock()
        # Claim first: a new key (the common case) then costs no lookup before it; an
        # existing row is left alone. The claim is committed before the ERP call: from
        # then on nobody else calls the ERP for this key while the lease lives.
        entry = self.pending_entry(
            org,
            order,
            attempt,
            now=now,
            push_round=push_round,
            previous_idempotency_key=previous_idempotency_key,
        )
        (grant,) = self.writer.claim_many([ClaimRequest(entry, fresh_only=False)])
        if grant.claimed:
            connection = grant.connection
            claimed = replace(
                entry, connector_type=connection.connector_type if connection else None
            )
            return claimed, Claim(claimed, connection)
        with self.uow as uow:
            existing = uow.push_log.find(key)  # the earlier or winning row (committed)
            if existing is not None and existing.lease_expired(now):
                connection = uow.connections.get_active(org)
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
        """:meth:`record_outcomes` of one outcome (``now`` defaults to the clock)."""
        outcome_to_record = OutcomeToRecord(claim, outcome, events, now or self.clock())
        return self.record_outcomes([outcome_to_record])[0]

    def record_outcomes(self, outcomes: Sequence[OutcomeToRecord]) -> list[PushLogEntry | None]:
        """Write claimed attempts' outcomes, each with its outbox events, in one statement.

        Each outcome's ``now`` is its row's ``updated_at``: the handler passes
        the time its events were built at, which a retry's due time counts from.

        Per outcome: the updated row, or ``None`` when the row is no longer
        PENDING (our lease expired and another worker recorded the attempt
        first; its outcome stands and these events are not written). Committed
        before this returns.
        """
        writes = [
            OutcomeWrite(
                entry_id=o.claim.entry.id,
                status=o.outcome.status,
                now=o.now,
                response_json=o.outcome.response_json,
                error_message=o.outcome.error_message,
                latency_ms=o.outcome.latency_ms,
                events=o.events,
            )
            for o in outcomes
        ]
        recorded = self.writer.record_many(writes)
        return [
            replace(
                o.claim.entry,
                status=o.outcome.status,
                response_json=o.outcome.response_json,
                error_message=o.outcome.error_message,
                latency_ms=o.outcome.latency_ms,
                updated_at=o.now,
                lease_expires_at=None,
            )
            if done
            else None
            for o, done in zip(outcomes, recorded, strict=True)
        ]

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
