"""Pushing a FAILED order again: the key format of push rounds and ``push_again`` on fakes."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from adapters.avro.codec import decode_push_requested, encode_push_requested
from adapters.avro.records import push_requested_from_outbox, push_round_of_request
from domain.idempotency import generate_idempotency_key, parse_idempotency_key
from domain.model import DraftOrder, DraftOrderStatus, OrderLine, PushStatus
from domain.records import EVENT_PUSH_REQUESTED, PushLogEntry, order_to_json
from producer.approval import approve_draft_order
from producer.push_again import push_again
from tests.fakes import FakeClock, FakeDatabase, FakePushLogStore, FakeUnitOfWork

ORG = uuid.UUID("11111111-2222-4333-8444-555555555555")
ORDER = uuid.UUID("66666666-7777-4888-9999-aaaaaaaaaaaa")


# --- key format --------------------------------------------------------------------------


def test_round_zero_keys_are_the_seeds_and_later_rounds_carry_the_round() -> None:
    assert generate_idempotency_key(ORG, ORDER, 2) == f"erp-push:{ORG}:{ORDER}:2"
    assert generate_idempotency_key(ORG, ORDER, 2, push_round=0) == f"erp-push:{ORG}:{ORDER}:2"
    assert generate_idempotency_key(ORG, ORDER, 0, push_round=3) == f"erp-push:{ORG}:{ORDER}:r3:0"
    assert generate_idempotency_key(str(ORG).upper(), ORDER, 1, push_round=2) == (
        f"erp-push:{ORG}:{ORDER}:r2:1"
    )


@pytest.mark.parametrize(("push_round", "attempt"), [(0, 0), (0, 7), (1, 0), (12, 3)])
def test_keys_parse_back_to_their_parts(push_round: int, attempt: int) -> None:
    key = generate_idempotency_key(ORG, ORDER, attempt, push_round=push_round)
    parsed = parse_idempotency_key(key)
    assert (parsed.org_id, parsed.draft_order_id, parsed.push_round, parsed.attempt) == (
        ORG,
        ORDER,
        push_round,
        attempt,
    )
    assert str(parsed) == key


@pytest.mark.parametrize(
    "text",
    [
        "",
        "erp-push",
        f"erp-push:{ORG}:{ORDER}",
        f"erp-push:{ORG}:{ORDER}:-1",
        f"erp-push:{ORG}:{ORDER}:r0:1",  # round 0 has no mark
        f"erp-push:{ORG}:{ORDER}:r1",
        f"erp-push:{ORG}:{ORDER}:01",
        f"other:{ORG}:{ORDER}:1",
        f"erp-push:{ORG}:{ORDER}:1:extra",
    ],
)
def test_anything_else_is_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"erp-push:<org_id>:<draft_order_id>:r<round>:<attempt>"):
        parse_idempotency_key(text)


@pytest.mark.parametrize(("attempt", "push_round"), [(-1, 0), (0, -1), (True, 0), (0, 1.5)])
def test_bad_numbers_are_refused(attempt: object, push_round: object) -> None:
    with pytest.raises(ValueError, match="must be a non-negative integer"):
        generate_idempotency_key(ORG, ORDER, attempt, push_round=push_round)  # type: ignore[arg-type]


# --- push_again --------------------------------------------------------------------------


def make_order(org: uuid.UUID = ORG) -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=f"SO-{uuid.uuid4().hex[:6]}",
        customer_code="C-1",
        lines=(OrderLine(1, "SKU-1", Decimal("2"), Decimal("9.99")),),
        status=DraftOrderStatus.APPROVED,
    )


class World:
    def __init__(self) -> None:
        self.db = FakeDatabase()
        self.clock = FakeClock()

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.db)

    def row(
        self,
        order: DraftOrder,
        status: PushStatus,
        *,
        attempt: int = 0,
        push_round: int = 0,
        request: bool = True,
        lease: bool = True,
    ) -> PushLogEntry:
        now = self.clock()
        entry = PushLogEntry.pending(
            org_id=order.org_id,
            draft_order_id=order.id,
            idempotency_key=generate_idempotency_key(
                order.org_id, order.id, attempt, push_round=push_round
            ),
            attempt=attempt,
            now=now,
            lease_expires_at=now + timedelta(seconds=60) if lease else None,
            request_json=order_to_json(order) if request else None,
            push_round=push_round,
        )
        entry = replace(entry, status=status, error_message="boom")
        self.db.push_log[entry.id] = entry
        self.clock.advance(1)
        return entry


def test_a_failed_order_approved_here_gets_a_new_round_linked_to_the_failed_key() -> None:
    world = World()
    order = make_order()
    approve_draft_order(world.uow(), ORG, order, clock=world.clock)
    world.db.outbox.clear()
    failed = world.row(order, PushStatus.RETRYING)
    last = world.row(order, PushStatus.FAILED, attempt=1)

    outcome = push_again(world.uow(), ORG, order.id, clock=world.clock)

    assert (outcome.action, outcome.code, outcome.push_round) == ("pushed_again", "pushed_again", 1)
    assert outcome.ok and outcome.order_source == "draft_order"
    assert outcome.previous_idempotency_key == last.idempotency_key != failed.idempotency_key
    key = generate_idempotency_key(ORG, order.id, 0, push_round=1)
    assert outcome.idempotency_key == key
    [event] = world.db.outbox
    assert event.event_type == EVENT_PUSH_REQUESTED and event.aggregate_id == order.id
    assert (event.headers["idempotency_key"], event.headers["attempt"]) == (key, "0")
    record = decode_push_requested(encode_push_requested(push_requested_from_outbox(event)))
    assert (record["idempotency_key"], record["attempt"]) == (key, 0)
    assert push_round_of_request(record) == 1
    [requested] = [e for e in world.db.push_log.values() if e.push_round == 1]
    assert (requested.idempotency_key, requested.status, requested.attempt) == (
        key,
        PushStatus.PENDING,
        0,
    )
    assert requested.lease_expires_at is None  # nobody holds it: the worker takes it
    assert requested.previous_idempotency_key == last.idempotency_key
    assert outcome.view()["previous_idempotency_key"] == last.idempotency_key


def test_an_upstream_order_is_pushed_again_from_the_push_log() -> None:
    world = World()
    order = make_order()  # never stored in draft_order: it came straight from upstream
    world.row(order, PushStatus.FAILED)
    outcome = push_again(world.uow(), ORG, order.id, clock=world.clock)
    assert outcome.pushed_again and outcome.order_source == "push_log"
    [event] = world.db.outbox
    assert event.payload["order_number"] == order.order_number


def test_without_a_recorded_order_the_given_one_is_pushed_else_nothing() -> None:
    world = World()
    order = make_order()
    world.row(order, PushStatus.FAILED, request=False)
    refused = push_again(world.uow(), ORG, order.id, clock=world.clock)
    assert (refused.action, refused.code, refused.ok) == ("skipped", "no_order", False)
    assert world.db.outbox == []
    given = push_again(world.uow(), ORG, order.id, clock=world.clock, order=order)
    assert given.pushed_again and given.order_source == "given"
    with pytest.raises(ValueError, match="fallback order"):
        push_again(world.uow(), ORG, uuid.uuid4(), clock=world.clock, order=order)


def test_a_success_in_any_round_is_never_pushed_again() -> None:
    world = World()
    order = make_order()
    world.row(order, PushStatus.FAILED)
    success = world.row(order, PushStatus.SUCCESS, push_round=1)
    world.row(order, PushStatus.FAILED, push_round=2)  # cannot happen; SUCCESS still wins
    outcome = push_again(world.uow(), ORG, order.id, clock=world.clock)
    assert (outcome.action, outcome.code, outcome.ok) == ("skipped", "already_pushed", True)
    assert success.idempotency_key in outcome.reason and "SUCCESS" in outcome.reason
    assert outcome.idempotency_key == success.idempotency_key
    assert world.db.outbox == [] and len(world.db.push_log) == 3


@pytest.mark.parametrize("status", [PushStatus.PENDING, PushStatus.RETRYING])
def test_a_round_in_progress_is_left_alone(status: PushStatus) -> None:
    world = World()
    order = make_order()
    world.row(order, PushStatus.FAILED)
    busy = world.row(order, status, push_round=1)
    outcome = push_again(world.uow(), ORG, order.id, clock=world.clock)
    assert (outcome.code, outcome.ok) == ("in_progress", True)
    assert f"{busy.idempotency_key} is {status.value}" in outcome.reason
    assert world.db.outbox == []


def test_a_requested_round_waits_for_the_worker_and_is_not_requested_twice() -> None:
    world = World()
    order = make_order()
    world.row(order, PushStatus.FAILED)
    assert push_again(world.uow(), ORG, order.id, clock=world.clock).pushed_again
    second = push_again(world.uow(), ORG, order.id, clock=world.clock)
    assert second.code == "in_progress" and "waits for the push worker" in second.reason
    assert len(world.db.outbox) == 1
    assert sorted(e.push_round for e in world.db.push_log.values()) == [0, 1]


class _RacedPushLog(FakePushLogStore):
    """Another call inserts (and commits) the same round between our read and our insert."""

    def claim(self, entry: PushLogEntry) -> PushLogEntry | None:
        rival = replace(entry, id=uuid.uuid4())
        self._db.push_log[rival.id] = rival
        return super().claim(entry)


class _RacedUnitOfWork(FakeUnitOfWork):
    def _begin(self) -> None:
        super()._begin()
        self.push_log = _RacedPushLog(self._work)


def test_a_concurrent_request_of_the_same_round_writes_nothing() -> None:
    world = World()
    order = make_order()
    world.row(order, PushStatus.FAILED)
    outcome = push_again(_RacedUnitOfWork(world.db), ORG, order.id, clock=world.clock)
    assert outcome.code == "in_progress" and "another call" in outcome.reason
    assert world.db.outbox == []
    assert len(world.db.push_log) == 1  # nothing of ours was committed


def test_an_order_without_history_is_refused_with_why() -> None:
    world = World()
    outcome = push_again(world.uow(), ORG, ORDER, clock=world.clock)
    assert (outcome.action, outcome.code, outcome.ok) == ("skipped", "no_history", False)
    assert "no push attempt" in outcome.reason and str(ORDER) in outcome.reason
    assert world.db.outbox == [] and world.db.push_log == {}
