"""The relay's ports: where outbox events come from and where they go.

:class:`OutboxSource` is the database side (``adapters.postgres.outbox_relay``),
:class:`EventSink` the broker side (``adapters.kafka.event_sink``); the relay
engine (``producer.relay``) moves :data:`ClaimedRow` values from one to the other
and marks what the sink acknowledged. A :class:`Route` says where an event type
goes (built by the composition root from ``domain.events``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from domain.records import OutboxEvent


class OutboxSource(Protocol):
    """Where unpublished events come from, plus the leader lock and the wake-up signal."""

    def try_acquire_leadership(self) -> bool:
        """Take the leader lock if it is free; True if this relay holds it."""

    def release_leadership(self) -> None:
        """Give the leader lock back."""

    def claim(self, after_id: int, limit: int) -> Sequence[ClaimedRow]:
        """Return up to ``limit`` unpublished rows with ``id > after_id``, ascending ``id``."""

    def mark_published(self, ids: Sequence[int]) -> int:
        """Mark these events published (they are claimed no more); return how many were."""

    def wait_for_events(self, timeout: float, wake_fd: int | None = None) -> bool:
        """Wait up to ``timeout`` s for news of committed events; True if there was some.

        Must return early when ``wake_fd`` (if given) becomes readable.
        """

    def close(self) -> None:
        """Release the lock and every resource."""


#: One claimed outbox row, as little as publishing needs:
#: ``(id, event_type, key, value, headers, event)``. ``key`` is the aggregate id as
#: text (the Kafka key, and what a refused event holds back); ``value`` the Kafka
#: value the writer stored with the event; ``event`` the full record, loaded only when
#: ``value`` is ``None`` (the route must encode it then). A plain tuple on purpose:
#: the database driver builds it in C, so the relay's hot path creates no object per
#: row (see :func:`claimed_row` for building one from an :class:`OutboxEvent`).
ClaimedRow = tuple[int, str, str, bytes | None, Mapping[str, str], OutboxEvent | None]


def claimed_row(event: OutboxEvent) -> ClaimedRow:
    """The :data:`ClaimedRow` of ``event`` (for sources that hold full events)."""
    assert event.id is not None, "a claimed event has its sequence id"
    full = event if event.value is None else None
    return (event.id, event.event_type, str(event.aggregate_id), event.value, event.headers, full)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The broker's verdict on one sent event, identified by its outbox ``id``."""

    token: int
    ok: bool
    error: str | None = None


@dataclass(slots=True)
class Deliveries:
    """Delivery reports served by one sink call: acknowledged tokens, then failures.

    Successes are plain ids (no object per acknowledged message); only the rare
    failures carry a :class:`Delivery` with their reason.
    """

    acked: list[int] = field(default_factory=list)
    failed: list[Delivery] = field(default_factory=list)

    @classmethod
    def of(cls, reports: Sequence[Delivery]) -> Deliveries:
        """Split individual reports (fakes and simple sinks produce those)."""
        return cls(
            [report.token for report in reports if report.ok],
            [report for report in reports if not report.ok],
        )


class SinkRejected(Exception):  # noqa: N818 - reads as an outcome
    """The sink refused one message (not enqueued; no delivery report will come)."""


class SinkBroken(Exception):  # noqa: N818 - reads as a state
    """The sink cannot go on (e.g. a fatal idempotent-producer error); build a new one.

    Reports of messages it still had will never come; the relay re-sends them.
    """


class EventSink(Protocol):
    """Where events go: an asynchronous producer with delivery reports."""

    def send(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str], token: int
    ) -> None:
        """Enqueue one message; its report (``token``) comes from poll/flush.

        ``key`` is sent UTF-8 encoded. Raises :class:`SinkRejected` if the message
        was not enqueued (no report will come for it).
        """

    def poll(self, timeout: float) -> Deliveries:
        """Return the delivery reports that arrived, waiting up to ``timeout`` s for one."""

    def flush(self, timeout: float) -> Deliveries:
        """Wait up to ``timeout`` s for every outstanding report; return the reports."""

    def close(self) -> None:
        """Drop the sink (call :meth:`flush` first to keep what can be kept)."""


@dataclass(frozen=True)
class Route:
    """Where events of one ``event_type`` go and how their value is encoded."""

    topic: str
    encode: Callable[[OutboxEvent], bytes]
