"""Pushing a FAILED order again, through the real pipeline (PostgreSQL, relay, Kafka, worker, SFTP).

An order fails for want of a connection (``NoActiveConnection``: a FAILED push log
row, a FAILED ``PushResult`` and a dead letter); the connection is created; then
``orderflow dlq replay`` of its dead letter (or ``orderflow orders retry``) pushes
it again as push round 1 and it lands in the dropzone exactly once. Replaying or
retrying again, or replaying a dead letter of an order that succeeded, exports
nothing and says why. One relay and one worker serve the module (own database,
own topic prefix, one partition per topic); every wait is a bounded deadline loop.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from sqlalchemy import Engine, text

from adapters.avro.codec import decode_push_result, encode_push_requested
from adapters.avro.records import push_requested_record
from adapters.connectors.dropzone_json_v1 import DropzoneJsonV1Connector
from adapters.connectors.registry import ConnectorRegistry
from adapters.crypto.encryption import ConfigCipher
from adapters.crypto.keys import MasterKeyring
from adapters.kafka.config import producer_config
from adapters.kafka.headers import EventHeaders, FailureInfo, build_headers
from adapters.kafka.producer import EventProducer
from adapters.kafka.topics import TopicNames
from adapters.postgres.engine import make_session_factory
from consumer.handling import RetrySettings
from consumer.worker import WorkerSettings
from domain.idempotency import generate_idempotency_key
from domain.model import DraftOrder, OrderLine
from domain.ports import ERPConnectorPort
from domain.records import order_to_json
from entrypoints.bootstrap import sql_unit_of_work
from entrypoints.cli import EXIT_FAILED, EXIT_OK, main
from entrypoints.relay_wiring import RelayConfig, build_relay
from entrypoints.worker_process import WorkerConfig, build_worker
from infra.endpoints import SftpServer
from producer.approval import approve_draft_order, new_traceparent
from producer.push_again import PushAgainOutcome, push_again
from producer.relay_settings import RelaySettings
from tests.integration._pipeline import OUTBOX_WRITTEN, delete_topics, relay_and_worker

pytestmark = pytest.mark.integration

DEADLINE = 90.0
MASTER_KEY = os.urandom(32).hex()


class Registry:
    """The real registry with one shared dropzone connector (its SFTP pool is closed at the end)."""

    def __init__(self) -> None:
        self.dropzone = DropzoneJsonV1Connector()

    def get(self, connector_type: str, /) -> ERPConnectorPort:
        if connector_type == "DROPZONE_JSON_V1":
            return self.dropzone
        return ConnectorRegistry.get(connector_type)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


@dataclass
class Pipe:
    engine: Engine
    bootstrap: str
    topics: TopicNames
    cipher: ConfigCipher
    sftp: SftpServer
    reader: Consumer
    seen: list[Record] = field(default_factory=list)

    def connect(self, org: uuid.UUID) -> None:
        """Create the organisation's DROPZONE_JSON_V1 connection to the test's sshd."""
        config = {
            "host": self.sftp.host,
            "port": self.sftp.port,
            "username": self.sftp.username,
            "private_key": self.sftp.private_key_pem,
            "remote_dir": self.sftp.dropzone_dir,
            "host_key": self.sftp.host_key_line,
            "timeout_s": 10,
        }
        blob = self.cipher.encrypt_config(config, org_id=org, connector_type="DROPZONE_JSON_V1")
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO erp_connection (org_id, connector_type, config_encrypted, status)"
                    " VALUES (:org, 'DROPZONE_JSON_V1', :blob, 'ACTIVE')"
                ),
                {"org": org, "blob": blob},
            )

    def approve(self, order: DraftOrder) -> None:
        factory = make_session_factory(self.engine)
        approve_draft_order(sql_unit_of_work(session_factory=factory), order.org_id, order)

    def produce(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        producer = EventProducer(producer_config(self.bootstrap))
        producer.produce(topic, key, value, headers)
        assert producer.flush(DEADLINE) == 0

    def wait_for(self, what: str, match: Callable[[Record], bool], count: int = 1) -> list[Record]:
        deadline = time.monotonic() + DEADLINE
        while True:
            found = [r for r in self.seen if match(r)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {DEADLINE}s waiting for {what}")
            for msg in self.reader.consume(200, 0.2):
                if msg.error() is None:
                    headers = {
                        str(k): v.decode("utf-8", "replace")
                        for k, v in (msg.headers() or [])
                        if v is not None
                    }
                    self.seen.append(
                        Record(
                            msg.topic(),
                            msg.partition(),
                            msg.offset(),
                            msg.key(),
                            msg.value(),
                            headers,
                        )
                    )

    def results(self, order: DraftOrder, count: int) -> list[dict[str, Any]]:
        key = str(order.id).encode()
        found = self.wait_for(
            f"{count} result(s) of {order.id}",
            lambda r: r.topic == self.topics.results and r.key == key,
            count,
        )
        return [decode_push_result(r.value) for r in found]

    def dead_letter(self, order: DraftOrder) -> Record:
        key = str(order.id).encode()
        [record] = self.wait_for(
            f"the dead letter of {order.id}", lambda r: r.topic == self.topics.dlq and r.key == key
        )
        return record

    def push_log(self, order: DraftOrder) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT push_round, attempt, status, idempotency_key,"
                        " previous_idempotency_key, connector_type FROM erp_push_log"
                        " WHERE draft_order_id = :id ORDER BY push_round, attempt"
                    ),
                    {"id": order.id},
                )
            )

    def requests_written(self, order: DraftOrder) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        f"SELECT count(*) FROM {OUTBOX_WRITTEN}"
                        " WHERE aggregate_id = :id AND event_type = 'PushRequested'"
                    ),
                    {"id": order.id},
                ).scalar_one()
            )

    def files(self, order: DraftOrder) -> list[Path]:
        root = Path(self.sftp.dropzone_dir)
        return sorted(p for p in root.rglob("*") if p.is_file() and str(order.id) in p.name)

    def fail_for_want_of_a_connection(self, order: DraftOrder) -> Record:
        """The order's push ends FAILED (NoActiveConnection) with a dead letter."""
        [result] = self.results(order, 1)
        assert (result["status"], result["error_class"]) == ("FAILED", "NoActiveConnection")
        dead = self.dead_letter(order)
        assert dead.headers["error_class"] == "NoActiveConnection"
        assert [(r.push_round, r.attempt, r.status) for r in self.push_log(order)] == [
            (0, 0, "FAILED")
        ]
        return dead

    def file_version(self, order: DraftOrder) -> tuple[int, int]:
        """(inode, mtime) of the order's one dropzone file: an upload again changes them."""
        [path] = self.files(order)
        stat = path.stat()
        return stat.st_ino, stat.st_mtime_ns

    def assert_exported_once_in_round_1(self, order: DraftOrder) -> tuple[int, int]:
        """Round 1 SUCCESS, linked to round 0's FAILED key; one file on the SFTP disk."""
        results = self.results(order, 2)
        assert [r["status"] for r in results] == ["FAILED", "SUCCESS"]
        round_key = generate_idempotency_key(order.org_id, order.id, 0, push_round=1)
        assert results[1]["idempotency_key"] == round_key
        failed_key = generate_idempotency_key(order.org_id, order.id, 0)
        rows = self.push_log(order)
        assert [(r.push_round, r.attempt, r.status) for r in rows] == [
            (0, 0, "FAILED"),
            (1, 0, "SUCCESS"),
        ]
        assert (rows[1].idempotency_key, rows[1].previous_idempotency_key) == (
            round_key,
            failed_key,
        )
        assert rows[1].connector_type == "DROPZONE_JSON_V1"
        return self.file_version(order)

    def assert_nothing_more_exported(
        self, order: DraftOrder, requests: int, version: tuple[int, int]
    ) -> None:
        """No new request was written; still one SUCCESS row, one file, two results."""
        assert self.requests_written(order) == requests
        # A round of the pipeline for a marker order on the same partition: once its result
        # is in, anything the replays had caused for ``order`` would have been handled too.
        marker = order_for(order.org_id)
        self.approve(marker)
        assert self.results(marker, 1)[0]["status"] == "SUCCESS"
        rows = self.push_log(order)
        assert sum(1 for r in rows if r.status == "SUCCESS") == 1
        assert self.file_version(order) == version  # not uploaded again
        key = str(order.id).encode()
        assert len([r for r in self.seen if r.topic == self.topics.results and r.key == key]) == 2


def order_for(org: uuid.UUID) -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=f"SO-{uuid.uuid4().hex[:8]}",
        customer_code="CUST-1",
        lines=(OrderLine(1, "SKU-1", Decimal("2"), Decimal("9.99")),),
    )


def run(*argv: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, json.loads(out.getvalue() or "null")


def replay(pipe: Pipe, record: Record) -> tuple[int, dict[str, Any]]:
    where = f"{record.partition}:{record.offset}"
    return run("dlq", "replay", "--topic-prefix", pipe.topics.prefix, "--offset", where)


@pytest.fixture(scope="module")
def pipe(
    migrated_db_url: str, engine: Engine, kafka_bootstrap_servers: str, sftp_server: SftpServer
) -> Iterator[Pipe]:
    prefix = f"it-again-{uuid.uuid4().hex[:10]}"
    topics = TopicNames(prefix, retry_tiers=2)
    cipher = ConfigCipher(MasterKeyring.from_hex(MASTER_KEY))
    registry = Registry()
    config = WorkerConfig(
        bootstrap_servers=kafka_bootstrap_servers,
        database_url=migrated_db_url,
        topic_prefix=prefix,
        group_id=f"{prefix}-group",
        partitions=1,
        worker=WorkerSettings(
            concurrency=2,
            retry=RetrySettings(max_retries=1, retry_delay_base=0.2, retry_tiers=2),
            drain_timeout_s=10,
        ),
    )
    worker = build_worker(config, registry=registry, cipher=cipher)
    relay = build_relay(
        RelayConfig(
            database_url=migrated_db_url,
            bootstrap_servers=kafka_bootstrap_servers,
            topic_prefix=prefix,
            partitions=1,
            retry_tiers=2,
        ),
        RelaySettings(idle_poll_s=0.1),
    )
    reader = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap_servers,
            "group.id": f"{prefix}-reader",
            "enable.auto.commit": False,
        }
    )
    reader.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in topics.all()])
    pipe = Pipe(engine, kafka_bootstrap_servers, topics, cipher, sftp_server, reader)
    try:
        with relay_and_worker(relay, worker, config, DEADLINE):
            yield pipe
    finally:
        reader.close()
        registry.dropzone.close()
        delete_topics(kafka_bootstrap_servers, topics.all())


@pytest.fixture(autouse=True)
def cli_env(
    migrated_db_url: str, kafka_bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated_db_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap_servers)
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", MASTER_KEY)


def test_dlq_replay_of_a_failed_push_exports_it_once_and_never_again(pipe: Pipe) -> None:
    org = uuid.uuid4()
    order = order_for(org)
    pipe.approve(order)
    dead = pipe.fail_for_want_of_a_connection(order)
    pipe.connect(org)  # the cause is fixed

    status, summary = replay(pipe, dead)
    assert status == EXIT_OK, summary
    assert (summary["pushed_again"], summary["replayed"], summary["skipped"]) == (1, 0, 0)
    [result] = summary["results"]
    failed_key = generate_idempotency_key(org, order.id, 0)
    assert result["action"] == "pushed_again"
    assert (result["dlq_partition"], result["dlq_offset"]) == (dead.partition, dead.offset)
    assert result["draft_order_id"] == str(order.id)
    assert result["idempotency_key"] == generate_idempotency_key(org, order.id, 0, push_round=1)
    assert result["previous_idempotency_key"] == failed_key
    version = pipe.assert_exported_once_in_round_1(order)

    # Replaying the same dead letter again: the order was exported, nothing is written.
    status, summary = replay(pipe, dead)
    assert status == EXIT_OK, summary
    assert (summary["pushed_again"], summary["replayed"], summary["skipped"]) == (0, 0, 1)
    [again] = summary["results"]
    assert (again["action"], again["code"]) == ("skipped", "already_pushed")
    assert "already pushed: SUCCESS under key" in again["reason"]
    pipe.assert_nothing_more_exported(order, requests=2, version=version)


def test_replaying_a_dead_letter_of_an_order_that_succeeded_exports_nothing(pipe: Pipe) -> None:
    org = uuid.uuid4()
    pipe.connect(org)
    order = order_for(org)
    pipe.approve(order)
    assert pipe.results(order, 1)[0]["status"] == "SUCCESS"
    version = pipe.file_version(order)
    # A stray dead letter of that order (e.g. a copy dead-lettered by another consumer).
    now = datetime.now(UTC)
    key = generate_idempotency_key(org, order.id, 0)
    event_id = uuid.uuid4()
    value = encode_push_requested(
        push_requested_record(
            order,
            event_id=event_id,
            idempotency_key=key,
            attempt=0,
            occurred_at=now,
            approved_at=now,
        )
    )
    headers = EventHeaders(
        event_id=event_id,
        event_type="PushRequested",
        idempotency_key=key,
        org_id=org,
        attempt=0,
        occurred_at=now,
        traceparent=new_traceparent(),
        failure=FailureInfo.new(
            original_topic=pipe.topics.requests,
            original_partition=0,
            original_offset=0,
            error_class="ConnectorTransientError",
            error_message="timed out",
            first_failure_at=now,
        ),
    )
    pipe.produce(pipe.topics.dlq, str(order.id).encode(), value, build_headers(headers))
    [dead] = pipe.wait_for(
        "the stray dead letter",
        lambda r: r.topic == pipe.topics.dlq and r.key == str(order.id).encode(),
    )
    status, summary = replay(pipe, dead)
    assert status == EXIT_OK, summary
    [result] = summary["results"]
    assert (result["action"], result["code"]) == ("skipped", "already_pushed")
    assert result["idempotency_key"] == key and key in result["reason"]
    assert pipe.requests_written(order) == 1
    marker = order_for(org)
    pipe.approve(marker)
    assert pipe.results(marker, 1)[0]["status"] == "SUCCESS"
    assert pipe.file_version(order) == version


def test_orders_retry_pushes_a_failed_order_again_once(pipe: Pipe) -> None:
    org = uuid.uuid4()
    order = order_for(org)
    pipe.approve(order)
    pipe.fail_for_want_of_a_connection(order)
    pipe.connect(org)

    status, outcome = run("orders", "retry", "--org", str(org), "--order", str(order.id))
    assert status == EXIT_OK, outcome
    assert (outcome["action"], outcome["push_round"], outcome["order_source"]) == (
        "pushed_again",
        1,
        "draft_order",
    )
    assert outcome["previous_idempotency_key"] == generate_idempotency_key(org, order.id, 0)
    version = pipe.assert_exported_once_in_round_1(order)

    status, outcome = run("orders", "retry", "--org", str(org), "--order", str(order.id))
    assert status == EXIT_OK, outcome
    assert (outcome["action"], outcome["code"]) == ("skipped", "already_pushed")
    pipe.assert_nothing_more_exported(order, requests=2, version=version)

    # The push log as the operator sees it: both rounds, the second linked to the first.
    status, log = run("push-log", "--org", str(org), "--order", str(order.id))
    assert status == EXIT_OK
    failed_key = generate_idempotency_key(org, order.id, 0)
    assert [
        (e["push_round"], e["attempt"], e["status"], e["previous_idempotency_key"]) for e in log
    ] == [(0, 0, "FAILED", None), (1, 0, "SUCCESS", failed_key)]

    status, outcome = run("orders", "retry", "--org", str(org), "--order", str(uuid.uuid4()))
    assert status == EXIT_FAILED and outcome["code"] == "no_history"


def test_a_request_straight_from_upstream_is_pushed_again_from_the_push_log(pipe: Pipe) -> None:
    org = uuid.uuid4()
    order = order_for(org)
    now = datetime.now(UTC)
    key = generate_idempotency_key(org, order.id, 0)
    event_id = uuid.uuid4()
    value = encode_push_requested(
        push_requested_record(
            order,
            event_id=event_id,
            idempotency_key=key,
            attempt=0,
            occurred_at=now,
            approved_at=now,
        )
    )
    headers = EventHeaders(
        event_id=event_id,
        event_type="PushRequested",
        idempotency_key=key,
        org_id=org,
        attempt=0,
        occurred_at=now,
        traceparent=new_traceparent(),
    )
    pipe.produce(pipe.topics.requests, str(order.id).encode(), value, build_headers(headers))
    pipe.fail_for_want_of_a_connection(order)
    with pipe.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM draft_order WHERE id = :id"), {"id": order.id}
        ).scalar_one()
    assert stored == 0  # it never was an order of this database
    pipe.connect(org)

    status, outcome = run("orders", "retry", "--org", str(org), "--order", str(order.id))
    assert status == EXIT_OK, outcome
    assert (outcome["action"], outcome["order_source"]) == ("pushed_again", "push_log")
    version = pipe.assert_exported_once_in_round_1(order)
    # A second retry, and a replay of its dead letter: nothing more is exported.
    status, outcome = run("orders", "retry", "--org", str(org), "--order", str(order.id))
    assert (status, outcome["code"]) == (EXIT_OK, "already_pushed")
    status, summary = replay(pipe, pipe.dead_letter(order))
    assert status == EXIT_OK and summary["results"][0]["code"] == "already_pushed"
    pipe.assert_nothing_more_exported(order, requests=1, version=version)


def test_concurrent_push_agains_of_one_order_start_one_round(
    migrated_db_url: str, engine: Engine
) -> None:
    """Racing callers on real PostgreSQL: the round's unique key lets exactly one through."""
    org = uuid.uuid4()
    order = order_for(org)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO erp_push_log (org_id, draft_order_id, status, request_json,"
                " idempotency_key, attempt) VALUES (:org, :order, 'FAILED', :request, :key, 0)"
            ),
            {
                "org": org,
                "order": order.id,
                "request": json.dumps(order_to_json(order)),
                "key": generate_idempotency_key(org, order.id, 0),
            },
        )
    callers = 6
    barrier = threading.Barrier(callers)
    outcomes: list[PushAgainOutcome] = []

    def call() -> None:
        uow = sql_unit_of_work(database_url=migrated_db_url)
        barrier.wait(DEADLINE)
        outcomes.append(push_again(uow, org, order.id))

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert len(outcomes) == callers
    assert sorted(o.code for o in outcomes) == ["in_progress"] * (callers - 1) + ["pushed_again"]
    with engine.connect() as conn:
        rounds = conn.execute(
            text("SELECT push_round FROM erp_push_log WHERE draft_order_id = :o ORDER BY 1"),
            {"o": order.id},
        ).all()
        events = conn.execute(
            text(f"SELECT count(*) FROM {OUTBOX_WRITTEN} WHERE aggregate_id = :o"),
            {"o": order.id},
        ).scalar_one()
    assert [r.push_round for r in rounds] == [0, 1]
    assert events == 1
