"""The outbox source and event sink contracts against the relay's fakes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from domain.outbox_ports import EventSink, OutboxSource
from domain.records import OutboxEvent
from tests.contract.event_sink_contract import EventSinkContract
from tests.contract.outbox_source_contract import OutboxSourceContract
from tests.relay_fakes import FakeSink, FakeSource


class TestFakeSource(OutboxSourceContract):
    def make_source(self) -> OutboxSource:
        self.sink = FakeSink()
        return FakeSource([], [self.sink])

    def write(self, source: OutboxSource, events: Sequence[OutboxEvent]) -> list[int]:
        assert isinstance(source, FakeSource)
        start = max(source.rows, default=0)
        ids = []
        for offset, event in enumerate(events, start=1):
            source.add(replace(event, id=start + offset))
            ids.append(start + offset)
        return ids

    def acknowledge(self, source: OutboxSource, ids: Sequence[int]) -> None:
        self.sink.acked.update(ids)


class TestFakeSink(EventSinkContract):
    def make_sink(self) -> EventSink:
        return FakeSink()

    def refused_value(self, sink: EventSink, token: int) -> bytes:
        assert isinstance(sink, FakeSink)
        sink.reject.add(token)
        return b"too large"
