"""The outbox source and event sink contracts against PostgreSQL and a real Kafka broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import Engine, text

from adapters.kafka.config import producer_config
from adapters.kafka.event_sink import KafkaEventSink
from adapters.kafka.topics import ensure_topics
from adapters.postgres.engine import make_session_factory
from adapters.postgres.outbox_relay import PgOutboxRelayStore
from adapters.postgres.unit_of_work import SqlAlchemyUnitOfWork
from domain.outbox_ports import EventSink, OutboxSource
from domain.records import OutboxEvent
from tests.contract.event_sink_contract import EventSinkContract
from tests.contract.outbox_source_contract import OutboxSourceContract, an_event
from tests.integration._pipeline import delete_topics

pytestmark = pytest.mark.integration


class TestPgOutboxSource(OutboxSourceContract):
    @pytest.fixture(autouse=True)
    def _outbox(self, engine: Engine, migrated_db_url: str) -> Iterator[None]:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE outbox_event, outbox_published"))
        self.url = migrated_db_url
        self.factory = make_session_factory(engine)
        # A lock of its own: other tests' relays on this server never compete with it.
        self.lock_key = uuid.uuid4().int % 2**62
        yield
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE outbox_event, outbox_published"))

    def make_source(self) -> OutboxSource:
        return PgOutboxRelayStore(self.url, lock_key=self.lock_key)

    def write(self, source: OutboxSource, events: Sequence[OutboxEvent]) -> list[int]:
        uow = SqlAlchemyUnitOfWork(self.factory)
        with uow:
            stored = [uow.outbox.add(event) for event in events]
            uow.commit()
        return [int(e.id) for e in stored if e.id is not None]

    def test_a_second_session_waits_while_the_first_leads(self) -> None:
        first, second = self.make_source(), self.make_source()
        try:
            self.write(first, [an_event(1)])
            assert first.try_acquire_leadership()
            assert not second.try_acquire_leadership()
            first.release_leadership()
            assert second.try_acquire_leadership()
        finally:
            first.close()
            second.close()


class TestKafkaEventSink(EventSinkContract):
    @pytest.fixture(autouse=True)
    def _topic(self, kafka_bootstrap_servers: str) -> Iterator[None]:
        self.servers = kafka_bootstrap_servers
        self.topic = f"it-sink-{uuid.uuid4().hex[:10]}.push.results"
        ensure_topics(kafka_bootstrap_servers, [self.topic], partitions=1)
        yield
        delete_topics(kafka_bootstrap_servers, [self.topic])

    def make_sink(self) -> EventSink:
        return KafkaEventSink(producer_config(self.servers, client_id="it-contract-sink"))

    def refused_value(self, sink: EventSink, token: int) -> bytes:
        # Over librdkafka's message.max.bytes (1,000,000 by default): refused at send.
        return b"x" * 2_000_000
