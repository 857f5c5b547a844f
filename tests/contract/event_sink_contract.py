"""The contract of ``domain.outbox_ports.EventSink``, for every implementation.

A subclass gives :meth:`make_sink` and :meth:`refused_value` (a message the
sink must refuse at :meth:`~domain.outbox_ports.EventSink.send`, e.g. one
over the broker's size limit). The fake (tests/unit) and the Kafka sink on a
real broker (tests/integration) both run it.
"""

from __future__ import annotations

import time

import pytest

from domain.outbox_ports import Deliveries, EventSink, SinkRejected

#: Longest a contract test waits for delivery reports.
WAIT_S = 30.0


class EventSinkContract:
    """Tests every ``EventSink`` must pass."""

    #: The topic the messages go to (it exists for real sinks).
    topic: str = "contract.push.results"

    def make_sink(self) -> EventSink:
        """A new sink."""
        raise NotImplementedError

    def refused_value(self, sink: EventSink, token: int) -> bytes:
        """A value ``sink`` refuses for ``token`` (prepare the sink if it needs to)."""
        raise NotImplementedError

    def _acked_until(self, sink: EventSink, tokens: set[int]) -> Deliveries:
        seen = Deliveries()
        deadline = time.monotonic() + WAIT_S
        while set(seen.acked) < tokens and time.monotonic() < deadline:
            got = sink.poll(0.1)
            seen.acked += got.acked
            seen.failed += got.failed
        return seen

    def test_every_sent_message_is_acknowledged_by_its_token(self) -> None:
        sink = self.make_sink()
        try:
            for token in (11, 12, 13):
                sink.send(self.topic, f"key-{token}", b"value", {"event_id": str(token)}, token)
            seen = self._acked_until(sink, {11, 12, 13})
            assert sorted(seen.acked) == [11, 12, 13]
            assert seen.failed == []
        finally:
            sink.flush(WAIT_S)
            sink.close()

    def test_flush_returns_the_outstanding_reports(self) -> None:
        sink = self.make_sink()
        try:
            sink.send(self.topic, "k", b"v", {}, 21)
            reports = sink.flush(WAIT_S)
            more = sink.poll(0.0)
            assert 21 in reports.acked + more.acked
            assert sink.flush(1.0).acked == []  # nothing left
        finally:
            sink.close()

    def test_a_message_the_sink_cannot_take_is_refused_and_never_acknowledged(self) -> None:
        sink = self.make_sink()
        try:
            value = self.refused_value(sink, 31)
            with pytest.raises(SinkRejected):
                sink.send(self.topic, "k", value, {}, 31)
            sink.send(self.topic, "k", b"fine", {}, 32)
            reports = sink.flush(WAIT_S)
            assert 31 not in reports.acked and 32 in reports.acked
        finally:
            sink.close()
