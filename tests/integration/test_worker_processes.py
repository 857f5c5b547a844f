"""The push worker as real processes: SIGTERM drain, rebalances, SIGKILL after the DB commit.

Worker processes run ``orderflow consume`` (``entrypoints.cli``'s ``consume`` command,
then ``entrypoints.worker_process``) through ``tests.integration._worker_main``, which
journals every ERP call to a shared file (the exports are counted there, across
processes) and can SIGKILL the process right after a DB commit. The outbox relay
runs in a thread of the test. One temporary database for the module; each test
has its own topic prefix and consumer group. Every wait is a bounded deadline loop.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from adapters.avro.codec import decode_push_result
from adapters.crypto.encryption import ConfigCipher
from adapters.kafka.topics import TopicNames
from domain.model import DraftOrder
from domain.records import ConnectionRecord
from entrypoints import bootstrap
from entrypoints.relay_wiring import RelayConfig, build_relay, ensure_relay_topics
from producer.approval import approve_draft_order
from producer.relay_settings import RelaySettings
from tests.integration._pipeline import (
    PARTITIONS,
    Call,
    Journal,
    WorkerProcess,
    WorkerSetup,
    committed_offsets,
    delete_topics,
    final_statuses,
    make_order,
    push_log_rows,
    read_topic,
    statuses,
    wait_until,
)

pytestmark = pytest.mark.integration


@dataclass
class Pipeline:
    """The test's side of the pipeline: connections, approvals, the worker processes."""

    setup: WorkerSetup
    factory: sessionmaker[Session]
    journal: Journal
    tmp: Path
    started: list[WorkerProcess]

    def add_connection(self, org: uuid.UUID, config: Mapping[str, Any]) -> None:
        cipher = ConfigCipher.from_env({"ENCRYPTION_MASTER_KEY": self.setup.master_key})
        blob = cipher.encrypt_config(config, org_id=org, connector_type="MOCK")
        uow = bootstrap.sql_unit_of_work(session_factory=self.factory)
        with uow:
            uow.connections.add(ConnectionRecord.new(org, "MOCK", blob))
            uow.commit()

    def approve(self, *orders: DraftOrder) -> None:
        uow = bootstrap.sql_unit_of_work(session_factory=self.factory)
        for order in orders:
            approve_draft_order(uow, order.org_id, order)

    def worker(self, *, kill_after: int = 0, **overrides: Any) -> WorkerProcess:
        """Start a worker process; ``overrides`` replace fields of the shared setup."""
        setup = replace(self.setup, **overrides)
        log = self.tmp / f"worker-{len(self.started)}.log"
        process = WorkerProcess(setup, log, kill_after=kill_after)
        self.started.append(process)
        return process

    def committed_requests(self) -> int:
        """Requests whose offset the group committed (each partition's committed offset)."""
        offsets = committed_offsets(self.setup.bootstrap, self.setup.group, self.topics.requests)
        return sum(offsets.values())

    @property
    def topics(self) -> TopicNames:
        return self.setup.topics


@pytest.fixture
def pipeline(
    migrated_db_url: str, kafka_bootstrap_servers: str, engine: Engine, tmp_path: Path
) -> Iterator[Pipeline]:
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE erp_connection, erp_push_log, outbox_event, outbox_published, draft_order"
            )
        )
    prefix = f"it-wproc-{uuid.uuid4().hex[:10]}"
    relay_config = RelayConfig(
        database_url=migrated_db_url,
        bootstrap_servers=kafka_bootstrap_servers,
        topic_prefix=prefix,
        partitions=PARTITIONS,
    )
    ensure_relay_topics(relay_config)
    setup = WorkerSetup(
        database_url=migrated_db_url,
        bootstrap=kafka_bootstrap_servers,
        topics=TopicNames(prefix, retry_tiers=3),
        group=f"{prefix}-group",
        master_key=os.urandom(32).hex(),
        journal=tmp_path / "exports.journal",
        retry_delay_base=1.5,
    )
    relay = build_relay(relay_config, RelaySettings(idle_poll_s=0.1))
    relay_thread = threading.Thread(target=relay.run, daemon=True)
    relay_thread.start()
    started: list[WorkerProcess] = []
    factory = bootstrap.session_factory(engine=engine)
    try:
        yield Pipeline(setup, factory, Journal(setup.journal), tmp_path, started)
    finally:
        for process in started:
            process.stop()
        relay.stop()
        relay_thread.join(30)
        delete_topics(kafka_bootstrap_servers, setup.topics.all())
    assert not relay_thread.is_alive(), "the relay did not stop"


def all_succeeded(engine: Engine, orders: list[DraftOrder]) -> Callable[[], bool]:
    want = {str(order.id) for order in orders}

    def check() -> bool:
        final = final_statuses(engine)
        return set(final) == want and set(final.values()) == {"SUCCESS"}

    return check


def once_each(orders: list[DraftOrder]) -> Counter[str]:
    return Counter({str(order.id): 1 for order in orders})


def result_statuses(pipeline: Pipeline, expected: int) -> dict[str, str]:
    """PushResult status per draft order read from the results topic."""
    received = read_topic(pipeline.setup.bootstrap, pipeline.topics.results, expected, 30)
    results = [decode_push_result(message.value) for message in received]
    return {str(r["draft_order_id"]): str(r["status"]) for r in results}


# --- SIGTERM -------------------------------------------------------------------------------


def test_sigterm_drains_in_flight_erp_calls_commits_and_a_restart_exports_nothing_again(
    pipeline: Pipeline, engine: Engine
) -> None:
    org = uuid.uuid4()
    pipeline.add_connection(org, {"mode": "success", "latency_ms": 1500})
    first_wave = [make_order(org) for _ in range(12)]
    journal = pipeline.journal

    first = pipeline.worker()
    wait_until(first.has_partitions, 60, "the first worker to get partitions")
    pipeline.approve(*first_wave)
    wait_until(lambda: len(journal.running()) >= 2, 60, "ERP calls in flight")
    running_at_sigterm = journal.running()

    assert first.terminate(60) == 0, first.output()
    # Drained: every ERP call that was running ended, and its outcome is committed.
    assert not journal.running()
    ended = {(c.order, c.attempt) for c in journal.calls() if c.what == "end"}
    assert running_at_sigterm <= ended
    after_stop = statuses(engine)
    assert set(after_stop) == {"SUCCESS"}, after_stop  # no claim left PENDING
    # Offsets committed: exactly the handled requests (one per order on this topic).
    assert pipeline.committed_requests() == after_stop["SUCCESS"]
    assert "Push worker stopped" in first.output()

    second_wave = [make_order(org) for _ in range(6)]
    pipeline.approve(*second_wave)
    restarted = pipeline.worker()
    everything = first_wave + second_wave
    wait_until(all_succeeded(engine, everything), 90, "every order to succeed")
    assert restarted.terminate(60) == 0, restarted.output()

    assert journal.exports() == once_each(everything)
    # Nothing handled before the stop came back to the restarted worker.
    assert "duplicate ignored" not in restarted.output()
    assert pipeline.committed_requests() == len(everything)
    assert result_statuses(pipeline, len(everything)) == {
        str(order.id): "SUCCESS" for order in everything
    }


# --- SIGKILL between the DB commit and the offset commit -----------------------------------


def test_sigkill_after_the_db_commit_before_the_offset_commit_exports_once(
    pipeline: Pipeline, engine: Engine
) -> None:
    org = uuid.uuid4()
    pipeline.add_connection(org, {"mode": "success", "latency_ms": 50})
    orders = [make_order(org) for _ in range(10)]
    pipeline.approve(*orders)
    journal = pipeline.journal

    # One ERP call at a time: no other claim is left half-done by the kill.
    victim = pipeline.worker(kill_after=4, concurrency=1)
    assert victim.proc.wait(90) == -signal.SIGKILL, victim.output()
    killed = [c for c in journal.calls() if c.what == "killed"]
    assert len(killed) == 1
    order_id = killed[0].order
    assert final_statuses(engine)[order_id] == "SUCCESS"  # the DB commit happened
    # ... and the offset commit did not: the request will be delivered again.
    requests = read_topic(pipeline.setup.bootstrap, pipeline.topics.requests, len(orders))
    request = next(m for m in requests if m.key == order_id.encode())
    setup = pipeline.setup
    offsets = committed_offsets(setup.bootstrap, setup.group, pipeline.topics.requests)
    assert offsets[request.partition] <= request.offset

    restarted = pipeline.worker()
    wait_until(all_succeeded(engine, orders), 90, "every order to succeed")
    wait_until(
        lambda: f"Draft order {order_id} already pushed: duplicate ignored" in restarted.output(),
        60,
        "the redelivered request to be recognised as a duplicate",
    )
    assert restarted.terminate(60) == 0, restarted.output()
    assert journal.exports() == once_each(orders)
    assert result_statuses(pipeline, len(orders)) == {str(o.id): "SUCCESS" for o in orders}


# --- rebalances ----------------------------------------------------------------------------


def pending_retry(journal: Journal) -> Call | None:
    """A transient failure whose next attempt has not started yet (in any process)."""
    calls = journal.calls()
    started = {(c.order, c.attempt) for c in calls if c.what == "start"}
    for call in calls:
        retrying = call.what == "end" and call.status == "RETRYING"
        if retrying and (call.order, call.attempt + 1) not in started:
            return call
    return None


def retry_due_times(pipeline: Pipeline, engine: Engine) -> dict[tuple[str, int], datetime]:
    """``due_at`` of every retry record (not deferrals) by (draft order, attempt)."""
    retries = [row for row in push_log_rows(engine) if row.attempt >= 1]
    per_tier = Counter(min(row.attempt, pipeline.topics.retry_tiers) for row in retries)
    due: dict[tuple[str, int], datetime] = {}
    for tier, expected in per_tier.items():
        topic = pipeline.topics.retry(tier)
        for message in read_topic(pipeline.setup.bootstrap, topic, expected, 30):
            headers = message.headers
            if headers.get("error_class") == "Deferred":
                continue
            key = (message.key.decode(), int(headers["attempt"]))
            due[key] = datetime.fromisoformat(headers["due_at"])
    return due


def test_rebalance_between_two_live_workers_exports_each_order_once_in_order(
    pipeline: Pipeline, engine: Engine
) -> None:
    flaky, steady = uuid.uuid4(), uuid.uuid4()
    # The mock counts failures per process: an order fails once in each process it
    # meets, so retries (1.5 s, then 3 s) are pending on paused tier partitions
    # when a member joins and when one leaves.
    pipeline.add_connection(flaky, {"mode": "transient", "fail_times": 1, "latency_ms": 100})
    pipeline.add_connection(steady, {"mode": "success", "latency_ms": 100})
    orders: list[DraftOrder] = []
    journal = pipeline.journal

    first = pipeline.worker()
    wait_until(first.has_partitions, 60, "the first worker to get partitions")
    stop_approving = threading.Event()

    def approve_steadily() -> None:
        # A stream of approvals (not a burst) until the membership changes are done.
        while not stop_approving.is_set() and len(orders) < 300:
            order = make_order(flaky if len(orders) % 2 else steady)
            pipeline.approve(order)
            orders.append(order)
            stop_approving.wait(0.1)

    approver = threading.Thread(target=approve_steadily, daemon=True)
    approver.start()
    try:
        wait_until(
            lambda: any(c.status == "RETRYING" for c in journal.calls()), 60, "a first retry"
        )
        second = pipeline.worker()
        wait_until(second.has_partitions, 60, "the second worker to join the group")
        wait_until(lambda: "Revoked [(" in first.output(), 60, "the first to hand some over")

        # Stop a member while one of its retries waits for its due time.
        wait_until(lambda: pending_retry(journal) is not None, 60, "a pending retry")
        pending = pending_retry(journal)
        assert pending is not None
        leaving, staying = (first, second) if pending.pid == first.pid else (second, first)
        assert leaving.terminate(60) == 0, leaving.output()
    finally:
        stop_approving.set()
        approver.join(60)
    assert not approver.is_alive()
    wait_until(all_succeeded(engine, orders), 120, "every order to succeed")
    assert staying.terminate(60) == 0, staying.output()

    # Exactly once, and per order: attempts 0, 1, ... one at a time, none repeated.
    assert journal.exports() == once_each(orders)
    journal.assert_calls_in_sequence()
    calls = journal.calls()
    taken_over = [
        c.pid
        for c in calls
        if c.what == "start" and (c.order, c.attempt) == (pending.order, pending.attempt + 1)
    ]
    assert taken_over == [staying.pid]
    flaky_ids = {str(o.id) for o in orders if o.org_id == flaky}
    assert all(c.order in flaky_ids for c in calls if c.what == "end" and c.status == "RETRYING")

    # Never early (measured against each retry record's due time), and not lost in
    # a paused partition: each retry ran within a loose bound after it was due.
    due = retry_due_times(pipeline, engine)
    retried = [row for row in push_log_rows(engine) if row.attempt >= 1]
    assert {str(row.draft_order_id) for row in retried} == flaky_ids
    for row in retried:
        due_at = due[(str(row.draft_order_id), row.attempt)]
        assert row.created_at >= due_at, (row, due_at)
        assert row.created_at - due_at < timedelta(seconds=30), (row, due_at)


def test_a_retry_held_on_a_paused_partition_is_handled_after_the_partition_moves_and_returns(
    pipeline: Pipeline, engine: Engine
) -> None:
    org = uuid.uuid4()
    pipeline.add_connection(org, {"mode": "transient", "fail_times": 1})
    order = make_order(org)
    # A long first delay: the partition stays paused while it moves away and back.
    worker = pipeline.worker(retry_delay_base=8.0, log_level="DEBUG")
    wait_until(worker.has_partitions, 60, "the worker to get partitions")
    pipeline.approve(order)
    holding = re.compile(r"Holding (\S+)\[(\d+)\]@\d+ until (\S+ \S+)")
    wait_until(lambda: holding.search(worker.output()) is not None, 60, "the retry to be held")
    match = holding.search(worker.output())
    assert match is not None
    topic, partition = match.group(1), int(match.group(2))
    due = datetime.fromisoformat(match.group(3))

    # A member that can only take the retry tier: the paused partition moves to it ...
    assigned: list[TopicPartition] = []
    other = Consumer(
        {
            "bootstrap.servers": pipeline.setup.bootstrap,
            "group.id": pipeline.setup.group,
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    try:
        other.subscribe([topic], on_assign=lambda _c, parts: assigned.extend(parts))

        def took_it() -> bool:
            other.poll(0.1)  # rebalance callbacks run in poll; records are not committed
            return any(tp.partition == partition for tp in assigned)

        wait_until(took_it, 60, "the held partition to move to the other member")
        assert datetime.now(UTC) < due, "the partition moved only after the retry was due"
    finally:
        other.close()  # ... and back to the worker, where the retry must still run
    wait_until(all_succeeded(engine, [order]), 60, "the retry to run after the partition returned")
    assert worker.terminate(60) == 0, worker.output()

    assert pipeline.journal.exports() == once_each([order])
    pipeline.journal.assert_calls_in_sequence()
    retry = next(row for row in push_log_rows(engine) if row.attempt == 1)
    assert retry.created_at >= due  # never early
    assert retry.created_at - due < timedelta(seconds=30)
