"""The retry schedule: delay = base * 2 ** attempt (seed: 1 s, 2 s, 4 s)."""

from __future__ import annotations

from dataclasses import dataclass


def retry_delay(attempt: int, base: float = 1.0) -> float:
    """Return the delay in seconds before retry number ``attempt + 1``.

    ``attempt`` counts from 0: with ``base=1.0`` the delays are 1, 2, 4 ...
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base < 0:
        raise ValueError(f"retry_delay_base must be >= 0, got {base}")
    return float(base * (2**attempt))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before retrying a transient failure."""

    max_retries: int = 3
    retry_delay_base: float = 1.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.retry_delay_base < 0:
            raise ValueError(f"retry_delay_base must be >= 0, got {self.retry_delay_base}")

    @property
    def total_attempts(self) -> int:
        """Initial attempt plus retries."""
        return self.max_retries + 1

    def delays(self) -> list[float]:
        """The delays before each retry, in order."""
        return [retry_delay(n, self.retry_delay_base) for n in range(self.max_retries)]

    def may_retry(self, attempt: int) -> bool:
        """True if a failed ``attempt`` (0-based) may be followed by another."""
        return attempt < self.max_retries
