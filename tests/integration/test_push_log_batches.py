"""The push worker's batched claim and outcome statements on a real PostgreSQL.

``PushLogBatchWriter`` writes many claims (or outcomes with their outbox
events) in one statement, on its own connection (the worker's pipelines) or in
a caller's session (``PushOrchestrator(db_session)``). These tests pin the
per-record meaning: exactly one of racing claims of a key wins, history sends a
record to the full logic with nothing written, an outcome and its events commit
together or not at all, and a failed statement raises.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from adapters.postgres.push_log_sql import PushLogBatchWriter
from domain.model import PushStatus
from domain.push_writes import ClaimRequest, OutcomeWrite
from domain.records import AGGREGATE_DRAFT_ORDER, OutboxEvent, PushLogEntry

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def db(engine: Engine, migrated_db_url: str) -> Iterator[str]:
    """The module's database URL, emptied after each test."""
    yield migrated_db_url
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE erp_connection, erp_push_log, draft_order, outbox_event, outbox_published"
            )
        )


@pytest.fixture
def writer(db: str) -> Iterator[PushLogBatchWriter]:
    """A batch writer on the module's database."""
    w = PushLogBatchWriter(db)
    yield w
    w.close()


def add_connection(engine: Engine, org: uuid.UUID, status: str = "ACTIVE") -> uuid.UUID:
    connection_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO erp_connection (id, org_id, connector_type, config_encrypted, status)"
                " VALUES (:id, :org, 'MOCK', :blob, :status)"
            ),
            {"id": connection_id, "org": org, "blob": b"\x01blob", "status": status},
        )
    return connection_id


def pending(
    org: uuid.UUID, order: uuid.UUID, attempt: int = 0, key: str | None = None
) -> PushLogEntry:
    return PushLogEntry.pending(
        org_id=org,
        draft_order_id=order,
        idempotency_key=key or f"{order}-{attempt}",
        attempt=attempt,
        now=NOW,
        lease_expires_at=NOW + timedelta(seconds=300),
        request_json={"order_number": "SO-1", "lines": [{"quantity": "1.50"}]},
    )


def rows(engine: Engine, sql: str, **params: object) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def event(order: uuid.UUID, org: uuid.UUID, n: int) -> OutboxEvent:
    return OutboxEvent(
        event_id=uuid.uuid4(),
        aggregate_type=AGGREGATE_DRAFT_ORDER,
        aggregate_id=order,
        org_id=org,
        event_type="PushResult",
        payload={"n": n, "text": "caf\u00e9 'quoted' \"x\""},
        headers={"event_type": "PushResult", "n": str(n)},
        created_at=NOW,
        value=b"\x00\x01value-" + str(n).encode(),
    )


# --- claims --------------------------------------------------------------------------------


def test_a_new_key_is_claimed_with_the_active_connection(
    writer: PushLogBatchWriter, engine: Engine
) -> None:
    org, other_org = uuid.uuid4(), uuid.uuid4()
    connection_id = add_connection(engine, org)
    add_connection(engine, other_org, status="DISABLED")
    with_connection = pending(org, uuid.uuid4())
    without = pending(other_org, uuid.uuid4())

    grants = writer.claim_many([ClaimRequest(with_connection), ClaimRequest(without)])

    assert [g.claimed for g in grants] == [True, True]
    assert grants[0].connection is not None
    assert grants[0].connection.id == connection_id
    assert grants[0].connection.org_id == org
    assert grants[0].connection.config_encrypted == b"\x01blob"
    assert grants[1].connection is None  # a disabled connection is not the active one
    stored = dict(
        rows(engine, "SELECT id, connector_type FROM erp_push_log WHERE status = 'PENDING'")
    )
    assert stored == {with_connection.id: "MOCK", without.id: None}
    lease = rows(
        engine,
        "SELECT lease_expires_at, request_json FROM erp_push_log WHERE id = :i",
        i=with_connection.id,
    )
    assert lease == [(NOW + timedelta(seconds=300), with_connection.request_json)]


def test_history_leaves_the_record_to_the_full_logic_and_writes_nothing(
    writer: PushLogBatchWriter, engine: Engine
) -> None:
    org = uuid.uuid4()
    add_connection(engine, org)
    retried, succeeded, fresh_retry = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    # An order in retry (attempt 0 RETRYING), one already pushed, one whose retry is new.
    first = writer.claim_many(
        [
            ClaimRequest(pending(org, retried)),
            ClaimRequest(pending(org, succeeded)),
            ClaimRequest(pending(org, fresh_retry)),
        ]
    )
    assert all(g.claimed for g in first)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE erp_push_log SET status = 'RETRYING' WHERE draft_order_id IN (:a, :c)"),
            {"a": retried, "c": fresh_retry},
        )
        conn.execute(
            text("UPDATE erp_push_log SET status = 'SUCCESS' WHERE draft_order_id = :b"),
            {"b": succeeded},
        )
    before = rows(engine, "SELECT count(*) FROM erp_push_log")

    second = writer.claim_many(
        [
            # A new attempt-0 event of an order with any history: full logic (deferral).
            ClaimRequest(pending(org, retried, key="another-event-same-order")),
            # A retry of an order that already succeeded: full logic (duplicate).
            ClaimRequest(pending(org, succeeded, attempt=1)),
            # The same key again: full logic (duplicate / take-over).
            ClaimRequest(pending(org, retried)),
        ]
    )
    assert [g.claimed for g in second] == [False, False, False]
    assert rows(engine, "SELECT count(*) FROM erp_push_log") == before

    # A retry (attempt 1) of an order without SUCCESS is claimed the quick way.
    (retry,) = writer.claim_many([ClaimRequest(pending(org, fresh_retry, attempt=1))])
    assert retry.claimed


def test_racing_claims_of_one_key_exactly_one_wins(db: str, engine: Engine) -> None:
    org, order = uuid.uuid4(), uuid.uuid4()
    add_connection(engine, org)
    writers = [PushLogBatchWriter(db) for _ in range(8)]
    start = threading.Barrier(len(writers))
    claimed: list[bool] = []
    lock = threading.Lock()

    def race(w: PushLogBatchWriter) -> None:
        # Each batch also holds keys of its own, in another order than the others'.
        own = [ClaimRequest(pending(org, uuid.uuid4())) for _ in range(3)]
        contested = ClaimRequest(pending(org, order))
        start.wait(10)
        grants = w.claim_many([*own, contested])
        assert all(g.claimed for g in grants[:3])
        with lock:
            claimed.append(grants[3].claimed)

    threads = [threading.Thread(target=race, args=(w,)) for w in writers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        for w in writers:
            w.close()
    assert sorted(claimed) == [False] * 7 + [True]
    contested_rows = rows(
        engine, "SELECT count(*) FROM erp_push_log WHERE draft_order_id = :o", o=order
    )
    assert contested_rows == [(1,)]


def test_one_key_twice_in_one_batch_is_claimed_once(
    writer: PushLogBatchWriter, engine: Engine
) -> None:
    org, order = uuid.uuid4(), uuid.uuid4()
    grants = writer.claim_many(
        [ClaimRequest(pending(org, order)), ClaimRequest(pending(org, order))]
    )
    assert sorted(g.claimed for g in grants) == [False, True]
    assert rows(engine, "SELECT count(*) FROM erp_push_log") == [(1,)]


# --- outcomes ------------------------------------------------------------------------------


def test_outcomes_and_their_events_are_written_only_for_pending_rows(
    writer: PushLogBatchWriter, engine: Engine
) -> None:
    org = uuid.uuid4()
    live, superseded = pending(org, uuid.uuid4()), pending(org, uuid.uuid4())
    writer.claim_many([ClaimRequest(live), ClaimRequest(superseded)])
    with engine.begin() as conn:  # another worker recorded this attempt first
        conn.execute(
            text("UPDATE erp_push_log SET status = 'FAILED' WHERE id = :i"), {"i": superseded.id}
        )
    live_events = [event(live.draft_order_id, org, 1), event(live.draft_order_id, org, 2)]
    recorded = writer.record_many(
        [
            OutcomeWrite(
                entry_id=live.id,
                status=PushStatus.SUCCESS,
                now=NOW + timedelta(seconds=1),
                response_json={"storage_key": "mock/x"},
                latency_ms=7,
                events=live_events,
            ),
            OutcomeWrite(
                entry_id=superseded.id,
                status=PushStatus.SUCCESS,
                now=NOW,
                events=[event(superseded.draft_order_id, org, 3)],
            ),
        ]
    )

    assert recorded == [True, False]
    state = rows(
        engine,
        "SELECT status, response_json, latency_ms, lease_expires_at, updated_at"
        " FROM erp_push_log WHERE id = :i",
        i=live.id,
    )
    assert state == [("SUCCESS", {"storage_key": "mock/x"}, 7, None, NOW + timedelta(seconds=1))]
    assert rows(engine, "SELECT status FROM erp_push_log WHERE id = :i", i=superseded.id) == [
        ("FAILED",)
    ]
    # Only the live row's events, in the order given (their ids are the publish order).
    stored = rows(
        engine,
        "SELECT event_id, aggregate_id, event_type, payload, headers, value"
        " FROM outbox_event ORDER BY id",
    )
    assert [(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in stored] == [  # type: ignore[arg-type]
        (
            e.event_id,
            e.aggregate_id,
            "PushResult",
            e.payload,
            e.headers,
            e.value,
        )
        for e in live_events
    ]


def test_a_failing_outcome_batch_writes_nothing_of_it(
    writer: PushLogBatchWriter, engine: Engine
) -> None:
    org = uuid.uuid4()
    good, bad = pending(org, uuid.uuid4()), pending(org, uuid.uuid4())
    writer.claim_many([ClaimRequest(good), ClaimRequest(bad)])
    duplicate = event(good.draft_order_id, org, 1)

    with pytest.raises(Exception, match="uq_outbox_event_event_id"):
        writer.record_many(
            [
                OutcomeWrite(good.id, PushStatus.SUCCESS, NOW, events=[duplicate]),
                # The same event id twice: the outbox insert fails, so the whole statement.
                OutcomeWrite(bad.id, PushStatus.SUCCESS, NOW, events=[duplicate]),
            ]
        )

    statuses = {r[0] for r in rows(engine, "SELECT status FROM erp_push_log")}
    assert statuses == {"PENDING"}  # neither outcome was recorded
    assert rows(engine, "SELECT count(*) FROM outbox_event") == [(0,)]
    # The writer is usable again after the failed statement.
    assert writer.record_many([OutcomeWrite(good.id, PushStatus.SUCCESS, NOW)]) == [True]


# --- several writers at once (the worker's pipelines), the encoder, failures, sessions ---------


def test_concurrent_writers_claim_and_record_batches_exactly_once(db: str, engine: Engine) -> None:
    org = uuid.uuid4()
    add_connection(engine, org)
    orders = [uuid.uuid4() for _ in range(40)]
    errors: list[BaseException] = []
    won: list[int] = []
    lock = threading.Lock()

    def pipeline() -> None:
        # Every pipeline tries to claim the SAME 40 keys in one statement.
        writer = PushLogBatchWriter(db, encoder=lambda e: b"encoded")
        try:
            entries = [pending(org, order, key=f"{order}-r0-0") for order in orders]
            grants = writer.claim_many([ClaimRequest(e) for e in entries])
            mine = [e for e, g in zip(entries, grants, strict=True) if g.claimed]
            assert all(g.connection is not None for g in grants if g.claimed)
            outcome_writes = [
                OutcomeWrite(
                    e.id,
                    PushStatus.SUCCESS,
                    NOW,
                    response_json={"ok": True},
                    latency_ms=1,
                    events=[replace(event(e.draft_order_id, org, 0), value=None)],
                )
                for e in mine
            ]
            if outcome_writes:
                assert writer.record_many(outcome_writes) == [True] * len(mine)
            with lock:
                won.append(len(mine))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            writer.close()

    threads = [threading.Thread(target=pipeline) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(won) == 40  # each key claimed by exactly one pipeline
    assert rows(engine, "SELECT status, count(*) FROM erp_push_log GROUP BY status") == [
        ("SUCCESS", 40)
    ]
    values = rows(engine, "SELECT DISTINCT value FROM outbox_event")
    assert [bytes(v[0]) for v in values] == [b"encoded"]  # type: ignore[arg-type]
    assert rows(engine, "SELECT count(*) FROM outbox_event") == [(40,)]


def test_a_writer_that_cannot_connect_raises_and_never_shows_its_dsn() -> None:
    # Nothing listens on port 9 of localhost.
    writer = PushLogBatchWriter("postgresql+psycopg2://nobody:secret@127.0.0.1:9/none")
    with pytest.raises(psycopg2.OperationalError):
        writer.claim_many([ClaimRequest(pending(uuid.uuid4(), uuid.uuid4()))])
    assert repr(writer) == "PushLogBatchWriter()"
    writer.close()


def test_a_claim_that_is_not_fresh_only_ignores_history_but_never_a_taken_key(
    writer: PushLogBatchWriter, engine: Engine
) -> None:
    org, order = uuid.uuid4(), uuid.uuid4()
    add_connection(engine, org)
    [first] = writer.claim_many([ClaimRequest(pending(org, order, key=f"{order}-r0-0"))])
    assert first.claimed
    retry = pending(org, order, attempt=1, key=f"{order}-r0-1")
    # attempt 1 with attempt 0 still PENDING: the quick way lets it through too (no SUCCESS)
    # but a second attempt 0 of the order is history the full logic must look at.
    again = pending(org, order, key=f"{order}-r0-0b")
    assert not writer.claim_many([ClaimRequest(again)])[0].claimed
    assert writer.claim_many([ClaimRequest(again, fresh_only=False)])[0].claimed
    assert writer.claim_many([ClaimRequest(retry, fresh_only=False)])[0].claimed
    taken = pending(org, order, key=f"{order}-r0-0")
    assert not writer.claim_many([ClaimRequest(taken, fresh_only=False)])[0].claimed
    assert rows(engine, "SELECT count(*) FROM erp_push_log WHERE draft_order_id = :o", o=order) == [
        (3,)
    ]


def test_a_writer_on_a_session_commits_in_the_callers_session(db: str, engine: Engine) -> None:
    org, order = uuid.uuid4(), uuid.uuid4()
    add_connection(engine, org)
    with Session(engine) as session:
        writer = PushLogBatchWriter.on_session(session, encoder=lambda e: b"v")
        entry = pending(org, order, key=f"{order}-r0-0")
        [grant] = writer.claim_many([ClaimRequest(entry)])
        assert grant.claimed and grant.connection is not None
        # Committed: another connection sees the claim at once.
        assert rows(engine, "SELECT status FROM erp_push_log WHERE id = :i", i=entry.id) == [
            ("PENDING",)
        ]
        write = OutcomeWrite(
            entry.id, PushStatus.FAILED, NOW, error_message="no", events=[event(order, org, 0)]
        )
        assert writer.record_many(
            [replace(write, events=[replace(e, value=None) for e in write.events])]
        ) == [True]
    assert rows(engine, "SELECT status FROM erp_push_log WHERE id = :i", i=entry.id) == [
        ("FAILED",)
    ]
    values = rows(engine, "SELECT value FROM outbox_event WHERE aggregate_id = :o", o=order)
    assert [bytes(v[0]) for v in values] == [b"v"]  # type: ignore[arg-type]


def test_claims_carry_their_push_round_and_yield_to_a_later_round(
    writer: PushLogBatchWriter, engine: Engine
) -> None:
    org, order = uuid.uuid4(), uuid.uuid4()
    add_connection(engine, org)
    first = pending(org, order, key=f"{order}-r0-0")
    later = replace(
        pending(org, order, attempt=1, key=f"{order}-r2-1"),
        push_round=2,
        previous_idempotency_key=f"{order}-r1-3",
    )
    stale = pending(org, order, attempt=1, key=f"{order}-r1-1")
    stale = replace(stale, push_round=1)
    [grant] = writer.claim_many([ClaimRequest(first)])
    assert grant.claimed
    assert rows(
        engine,
        "SELECT push_round, previous_idempotency_key FROM erp_push_log WHERE id = :i",
        i=first.id,
    ) == [(0, None)]
    # A retry of round 2: claimed the quick way, with its round and link written.
    [grant] = writer.claim_many([ClaimRequest(later)])
    assert grant.claimed
    assert rows(
        engine,
        "SELECT push_round, previous_idempotency_key FROM erp_push_log WHERE id = :i",
        i=later.id,
    ) == [(2, f"{order}-r1-3")]
    # A new key of round 1 once round 2 exists: left to the full logic (a duplicate there).
    [grant] = writer.claim_many([ClaimRequest(stale)])
    assert not grant.claimed
    assert rows(engine, "SELECT count(*) FROM erp_push_log WHERE draft_order_id = :o", o=order) == [
        (2,)
    ]
