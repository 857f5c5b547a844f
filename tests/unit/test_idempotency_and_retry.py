"""Idempotency keys and the retry schedule (seed: same input -> same key; base * 2^n)."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.idempotency import KEY_PREFIX, export_key, generate_idempotency_key
from domain.retry import RetryPolicy, retry_delay

ORG = uuid.UUID("3f2b8c1a-9d4e-4f6a-8b7c-1d2e3f4a5b6c")
ORDER = uuid.UUID("a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d")

uuids = st.uuids()
attempts = st.integers(min_value=0, max_value=10_000)


# --- idempotency keys ---------------------------------------------------------------------


def test_key_format() -> None:
    assert generate_idempotency_key(ORG, ORDER, 2) == f"erp-push:{ORG}:{ORDER}:2"
    assert KEY_PREFIX == "erp-push"


def test_attempt_defaults_to_zero() -> None:
    assert generate_idempotency_key(ORG, ORDER) == generate_idempotency_key(ORG, ORDER, 0)


@pytest.mark.parametrize(
    ("org", "order"),
    [
        (str(ORG), str(ORDER)),
        (str(ORG).upper(), str(ORDER).upper()),
        (ORG.hex, ORDER.hex),
        (f"{{{ORG}}}", f"urn:uuid:{ORDER}"),
        (ORG, str(ORDER).upper()),
    ],
)
def test_str_uuid_and_case_give_the_same_key(org: Any, order: Any) -> None:
    assert generate_idempotency_key(org, order, 1) == generate_idempotency_key(ORG, ORDER, 1)
    assert export_key(org, order) == export_key(ORG, ORDER)


@pytest.mark.parametrize("attempt", [-1, -100, True, False, 1.0, "1", None])
def test_attempt_must_be_a_non_negative_int(attempt: Any) -> None:
    with pytest.raises(ValueError, match="attempt must be a non-negative integer, got "):
        generate_idempotency_key(ORG, ORDER, attempt)


@pytest.mark.parametrize("bad", ["", "not-a-uuid", "1234", str(ORG)[:-1]])
def test_ids_must_be_uuids(bad: str) -> None:
    with pytest.raises(ValueError):
        generate_idempotency_key(bad, ORDER)
    with pytest.raises(ValueError):
        generate_idempotency_key(ORG, bad)
    with pytest.raises(ValueError):
        export_key(bad, ORDER)


@given(org=uuids, order=uuids, attempt=attempts)
def test_same_input_same_key_and_it_parses_back(
    org: uuid.UUID, order: uuid.UUID, attempt: int
) -> None:
    key = generate_idempotency_key(org, order, attempt)
    assert key == generate_idempotency_key(str(org).upper(), str(order), attempt)
    prefix, org_text, order_text, attempt_text = key.split(":")
    assert (prefix, uuid.UUID(org_text), uuid.UUID(order_text), int(attempt_text)) == (
        KEY_PREFIX,
        org,
        order,
        attempt,
    )


@given(a=st.tuples(uuids, uuids, attempts), b=st.tuples(uuids, uuids, attempts))
def test_different_inputs_give_different_keys(
    a: tuple[uuid.UUID, uuid.UUID, int], b: tuple[uuid.UUID, uuid.UUID, int]
) -> None:
    assert (generate_idempotency_key(*a) == generate_idempotency_key(*b)) == (a == b)


def test_swapping_org_and_order_changes_the_key() -> None:
    assert generate_idempotency_key(ORG, ORDER) != generate_idempotency_key(ORDER, ORG)


@given(org=uuids, order=uuids, first=attempts, second=attempts)
def test_export_key_is_shared_by_every_attempt(
    org: uuid.UUID, order: uuid.UUID, first: int, second: int
) -> None:
    assert export_key(org, order) == f"{org}:{order}"
    key_a = generate_idempotency_key(org, order, first)
    key_b = generate_idempotency_key(org, order, second)
    assert key_a.startswith(f"{KEY_PREFIX}:{export_key(org, order)}:")
    assert key_b.startswith(f"{KEY_PREFIX}:{export_key(org, order)}:")


# --- retry delays -------------------------------------------------------------------------


def test_seed_delays_are_1_2_4_seconds() -> None:
    assert [retry_delay(n) for n in range(3)] == [1.0, 2.0, 4.0]
    assert [retry_delay(n, 1.0) for n in range(3)] == [1.0, 2.0, 4.0]
    assert all(type(retry_delay(n)) is float for n in range(3))


def test_other_bases() -> None:
    assert [retry_delay(n, 0.5) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert [retry_delay(n, 0) for n in range(3)] == [0.0, 0.0, 0.0]
    assert retry_delay(3, 2.5) == 20.0


@pytest.mark.parametrize(("attempt", "base"), [(-1, 1.0), (0, -0.1), (-3, -1.0)])
def test_negative_attempt_or_base_is_refused(attempt: int, base: float) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        retry_delay(attempt, base)


@given(attempt=st.integers(0, 30), base=st.floats(0, 60, allow_nan=False))
def test_delay_is_base_times_two_to_the_attempt(attempt: int, base: float) -> None:
    delay = retry_delay(attempt, base)
    assert delay == base * 2**attempt
    assert retry_delay(attempt + 1, base) == 2 * delay
    assert delay >= base


def test_default_policy_is_the_seeds() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.retry_delay_base) == (3, 1.0)
    assert policy.total_attempts == 4
    assert policy.delays() == [1.0, 2.0, 4.0]
    assert [policy.may_retry(n) for n in range(5)] == [True, True, True, False, False]


def test_policy_without_retries() -> None:
    policy = RetryPolicy(max_retries=0)
    assert policy.total_attempts == 1
    assert policy.delays() == []
    assert policy.may_retry(0) is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries must be >= 0, got -1"),
        ({"retry_delay_base": -0.5}, "retry_delay_base must be >= 0, got -0.5"),
    ],
)
def test_policy_refuses_negative_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        RetryPolicy(**kwargs)


@given(max_retries=st.integers(0, 20), base=st.floats(0, 10, allow_nan=False))
def test_policy_delays_double_and_match_retry_delay(max_retries: int, base: float) -> None:
    policy = RetryPolicy(max_retries=max_retries, retry_delay_base=base)
    delays = policy.delays()
    assert len(delays) == max_retries == policy.total_attempts - 1
    assert delays == [retry_delay(n, base) for n in range(max_retries)]
    for earlier, later in itertools.pairwise(delays):
        assert later == 2 * earlier
    assert sum(policy.may_retry(n) for n in range(max_retries + 5)) == max_retries
