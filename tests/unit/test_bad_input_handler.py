"""Poison requests: the handler dead-letters them, it never raises.

The worker retries a record whose handling RAISED (the database may be down) until
it succeeds, in front of its partition. So content that can never be handled must
come back as a ``DeadLetter``: a raise on bad content wedges the partition for ever.
These found three such wedges (a NUL in a text field, amounts whose total overflows,
a negative attempt); the pipeline-level cases are in
tests/integration/test_bad_input_pipeline.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.avro.codec import encode_push_requested
from adapters.avro.records import push_requested_record
from adapters.kafka.consumer import ConsumedMessage
from consumer.push_handler import DeadLetter, Handled
from domain.model import DraftOrder, OrderLine
from producer.approval import UnstorableOrder, approve_draft_order
from tests.fakes import FakeUnitOfWork
from tests.unit.test_push_handler import Env


def poison(env: Env, order: DraftOrder, attempt: int = 0) -> ConsumedMessage:
    """A request for ``order`` with a body ``attempt`` (the headers stay valid)."""
    good = env.request(order)
    now = datetime.now(UTC)
    value = encode_push_requested(
        push_requested_record(
            order,
            event_id=uuid.uuid4(),
            idempotency_key="any",
            attempt=attempt,
            occurred_at=now,
            approved_at=now,
        )
    )
    return ConsumedMessage(good.topic, 0, 7, good.key, value, good.headers, None, good.header_items)


def line(quantity: str = "1", price: str = "1", text: str = "x") -> OrderLine:
    return OrderLine(1, text, Decimal(quantity), Decimal(price), text, "kg")


CASES: dict[str, tuple[dict[str, Any], int, str]] = {
    "nul in notes": ({"notes": "a\x00b"}, 0, "order.notes contains a NUL character"),
    "nul in a line": ({"lines": (line(text="\x00"),)}, 0, "order.lines[0].product_code"),
    "nul in extra": ({"extra": {"k": ["\x00"]}}, 0, "order.extra['k'][0] contains a NUL"),
    "total overflows": (
        {"lines": (line("9E+999999", "9E+999999"),)},
        0,
        "the order total cannot be computed",
    ),
    "huge order number": ({"order_number": "N" * 1001}, 0, "order_number is 1001 bytes"),
    "negative attempt": ({}, -1, "attempt is -1, must be >= 0"),
}


def order_with(org: uuid.UUID, **fields: Any) -> DraftOrder:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "org_id": org,
        "order_number": "SO-1",
        "customer_code": "C",
        "lines": (line(),),
    }
    values.update(fields)
    return DraftOrder(**values)


@pytest.mark.parametrize("case", sorted(CASES))
def test_poison_request_is_dead_lettered_with_its_reason(case: str) -> None:
    fields, attempt, reason = CASES[case]
    env = Env()
    org = uuid.uuid4()
    env.connect(org)
    order = order_with(org, **fields)
    result = env.handler.handle(poison(env, order, attempt))
    assert isinstance(result, DeadLetter)
    assert reason in result.reason
    assert dict(result.headers)["error_class"] == b"InvalidMessage"
    assert env.log(order) == [] and env.calls(order) == 0
    # ... and the next request of the same order is handled normally.
    good = order_with(org, id=order.id)
    assert env.handle(env.request(good)) == "SUCCESS"


@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "negative attempt"))
def test_approval_refuses_what_cannot_be_recorded(case: str) -> None:
    fields, _, reason = CASES[case]
    env = Env()
    order = order_with(uuid.uuid4(), **fields)
    with pytest.raises(UnstorableOrder, match="cannot be approved: ") as excinfo:
        approve_draft_order(FakeUnitOfWork(env.db), order.org_id, order)
    assert reason.removeprefix("order.") in str(excinfo.value)
    assert env.db.outbox == []


texts = st.text(max_size=12)
amounts = st.decimals(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [Decimal("9E+999999"), Decimal("-1E-999999"), Decimal("0E+999999")]
)


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(
    order_number=texts,
    notes=texts,
    quantity=amounts,
    price=amounts,
    description=texts,
    extra=st.dictionaries(texts, texts | st.integers(), max_size=2),
    attempt=st.integers(-(2**31), 2**31 - 1),
)
def test_no_request_content_makes_the_handler_raise(
    order_number: str,
    notes: str,
    quantity: Decimal,
    price: Decimal,
    description: str,
    extra: dict[str, Any],
    attempt: int,
) -> None:
    env = Env()
    org = uuid.uuid4()
    env.connect(org)
    order = order_with(
        org,
        order_number=order_number,
        notes=notes,
        extra=extra,
        lines=(OrderLine(1, "P", quantity, price, description),),
    )
    result = env.handler.handle(poison(env, order, attempt))
    assert isinstance(result, Handled | DeadLetter)
