"""``PushService``: the seed's synchronous push with idempotency and retries.

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
4. **record** - SUCCESS (with the export's metadata), RETRYING (a retryable
   error - transient, a plain ``ConnectorError`` or an unexpected exception -
   with retries left: wait ``retry_delay(n, base)`` and go on) or FAILED
   (config, rejected or security error, ``retryable=False``, retries
   exhausted, no connection, undecryptable config, unknown connector type).

``request_json`` holds the order payload only; error messages are scrubbed of
every secret value of the config. The plaintext config lives only in memory
during the call.

Steps 2 and 3 live in ``consumer.push_attempt`` (shared with the Kafka push
worker). This is the application class: it gets every collaborator. The seed's
``PushOrchestrator(db_session)`` is built on it by the composition root
(``entrypoints.orchestrator``), which picks the adapters. It commits its own
transactions: a session it was built from must not hold uncommitted work the
caller wants to keep.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from consumer.push_attempt import (
    DEFAULT_LEASE_SECONDS,
    MAX_ERROR_MESSAGE_LENGTH,
    Claim,
    ConfigDecryptor,
    ConnectorLookup,
    JsonValue,
    PushAttempts,
)
from domain.idempotency import generate_idempotency_key as _generate_key
from domain.model import DraftOrder, PushStatus
from domain.order_input import to_draft_order
from domain.push_writes import PushLogWriter
from domain.records import PushLogEntry, utc_now
from domain.repositories import UnitOfWork
from domain.retry import RetryPolicy, retry_delay

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "MAX_ERROR_MESSAGE_LENGTH",
    "ConfigDecryptor",
    "ConnectorLookup",
    "JsonValue",
    "PushService",
]

logger = logging.getLogger(__name__)


class PushService:
    """Pushes draft orders to the organisation's ERP, exactly once, with retries.

    Collaborators: ``uow`` (a ``domain.repositories.UnitOfWork``: reads the push
    log), ``writer`` (the ``domain.push_writes.PushLogWriter`` every claim and
    outcome is written through, a batch of one each), ``registry``
    (the connectors), ``cipher`` (decrypts connection configs), ``sleep``
    (seconds), ``clock`` (aware UTC ``datetime``), ``monotonic`` (seconds, for
    latency).
    """

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        writer: PushLogWriter,
        registry: ConnectorLookup,
        cipher: ConfigDecryptor,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        self.uow: UnitOfWork = uow
        self.registry: ConnectorLookup = registry
        self.cipher: ConfigDecryptor = cipher
        self._sleep = sleep or time.sleep
        self._clock = clock or utc_now
        self._monotonic = monotonic or time.perf_counter
        self._lease = timedelta(seconds=lease_seconds)
        self._attempts = PushAttempts(
            uow,
            registry,
            cipher,
            writer=writer,
            clock=self._clock,
            monotonic=self._monotonic,
            lease_seconds=lease_seconds,
        )

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
        draft_order: object,
        max_retries: int = 3,
        retry_delay_base: float = 1.0,
    ) -> PushLogEntry:
        """Push ``draft_order`` to the organisation's ERP; return the deciding log entry.

        ``draft_order`` is a ``DraftOrder``, the ``DraftOrderRow`` ORM row, a
        mapping (``order_to_json``'s shape) or any object with the order's
        attributes (``domain.order_input.to_draft_order``); without an
        ``org_id`` of its own it is ``org_id``'s. Anything else raises
        ``InvalidDraftOrder`` (a ``ValueError``) listing every problem, before
        anything is written or exported.

        The result's ``status`` is ``"SUCCESS"`` or ``"FAILED"``; it is
        ``"PENDING"`` if another worker holds the attempt right now, and
        ``"RETRYING"`` only if earlier calls already used up the attempts this
        call may make (``max_retries``) without finishing the push.
        """
        policy = RetryPolicy(max_retries=max_retries, retry_delay_base=retry_delay_base)
        order = to_draft_order(draft_order, org_id=org_id)
        return self._push(order.org_id, order, policy)

    def _push(self, org: uuid.UUID, draft_order: DraftOrder, policy: RetryPolicy) -> PushLogEntry:
        """``push_order`` of a converted order: dedupe, then attempts until one decides."""
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
    ) -> tuple[PushLogEntry, Claim | None]:
        """Return the attempt's row and, if this orchestrator now owns it, the claim."""
        return self._attempts.acquire(org, order, attempt)

    def _run(
        self, claim: Claim, order: DraftOrder, attempt: int, policy: RetryPolicy
    ) -> PushLogEntry:
        """Call the ERP for a claimed attempt and record the outcome."""
        outcome = self._attempts.call_erp(claim, order, attempt, policy)
        recorded = self._attempts.record_outcome(claim, outcome)
        if recorded is None:
            # Our lease expired and another worker finished the attempt first;
            # its outcome stands.
            with self.uow as uow:
                recorded = uow.push_log.get(claim.entry.id)
        if recorded is None:  # pragma: no cover - the row was deleted meanwhile
            raise RuntimeError(f"Push log row {claim.entry.idempotency_key} vanished")
        logger.info(
            "Push %s: %s%s",
            recorded.idempotency_key,
            recorded.status.value,
            f" ({recorded.error_message})" if recorded.error_message else "",
        )
        return recorded
