"""What handling one consumed record can come to, and the retry schedule it follows.

The push worker's loop (:mod:`consumer.worker`) and the handler
(:mod:`consumer.push_handler`) share these values: the handler returns
:class:`Handled` (the record is done, its offset may be stored) or a
:class:`DeadLetter` for the loop to produce to the DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from domain.messaging import HeaderPairs
from domain.retry import RetryPolicy

#: ``error_class`` header of a request deferred behind its order's retry chain or a live claim.
DEFERRED = "Deferred"
#: How long after the pending retry's due time a deferred event is due (it queues behind it).
DEFER_AFTER = timedelta(milliseconds=10)


@dataclass(frozen=True)
class DeadLetter:
    """A message to produce to the DLQ as is (value and key unchanged, failure headers added)."""

    key: bytes | None
    value: bytes | None
    headers: HeaderPairs
    reason: str


@dataclass(frozen=True)
class Handled:
    """The message is done (its outcome, if any, is committed): its offset may be stored."""

    what: str


HandleResult = Handled | DeadLetter


@dataclass(frozen=True)
class RetrySettings:
    """Retry schedule of the worker: ``max_retries`` attempts after the first, delay base·2^n."""

    max_retries: int = 3
    retry_delay_base: float = 1.0
    retry_tiers: int = 3

    @property
    def policy(self) -> RetryPolicy:
        """The schedule as a ``RetryPolicy`` (no retries when there is no tier to use)."""
        retries = self.max_retries if self.retry_tiers > 0 else 0
        return RetryPolicy(max_retries=retries, retry_delay_base=self.retry_delay_base)

    def tier_for(self, attempt: int) -> int:
        """The retry tier of ``attempt`` (>= 1); attempts beyond the last tier reuse it."""
        return max(1, min(attempt, self.retry_tiers))
