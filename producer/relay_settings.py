"""How the relay runs: its tuning (:class:`RelaySettings`), counters and exit reasons."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class RelaySettings:
    """Tuning of the relay loop (defaults suit production and the benchmarks)."""

    #: Rows per claim query.
    batch_size: int = 2000
    #: Most events sent but not yet acknowledged (bounds memory and re-sends).
    max_in_flight: int = 10_000
    #: Longest wait for a NOTIFY before polling anyway when idle. Only a safety net:
    #: every committed outbox insert NOTIFYs the listening leader (PostgreSQL does
    #: not drop notifications of a live session; a lost session means a reconnect,
    #: which starts a new pass), and a busy pass is always followed by another one
    #: (stragglers). Each timeout costs one claim: 0.5 query/s when idle.
    idle_poll_s: float = 2.0
    #: Pause between two leader-lock attempts of a standby.
    standby_retry_s: float = 1.0
    #: Under sustained load, start a new pass (re-scan for stragglers) this often.
    rescan_interval_s: float = 1.0
    #: Longest wait for delivery reports per loop turn while the window is full.
    ack_wait_s: float = 0.01
    #: Same, while caught up with events in flight: a NOTIFY is only checked between
    #: two turns, so this bounds what it adds to a new event's latency.
    caught_up_ack_wait_s: float = 0.002
    #: Longest wait for outstanding acknowledgements on stop.
    flush_timeout_s: float = 10.0
    #: Exit (``RelayExit.DRAINED``) once nothing is left to publish.
    drain: bool = False
    #: First and largest pause before reconnecting to an unavailable database.
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 10.0
    #: How often to log progress at INFO while publishing.
    progress_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.max_in_flight < self.batch_size:
            raise ValueError("max_in_flight must be at least batch_size")
        for name in (
            "idle_poll_s",
            "standby_retry_s",
            "rescan_interval_s",
            "ack_wait_s",
            "caught_up_ack_wait_s",
            "reconnect_initial_s",
            "reconnect_max_s",
            "progress_interval_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.flush_timeout_s < 0:
            raise ValueError("flush_timeout_s must not be negative")


@dataclass
class RelayStats:
    """Counters of one relay's life (for logs, tests and benchmarks)."""

    sent: int = 0
    acked: int = 0
    marked: int = 0
    failed_deliveries: int = 0
    rejected: int = 0
    claims: int = 0
    passes: int = 0
    leaderships: int = 0
    reconnects: int = 0


class RelayExit(enum.Enum):
    """Why :meth:`OutboxRelay.run` returned."""

    STOPPED = "stopped"
    DRAINED = "drained"
