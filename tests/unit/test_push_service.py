"""Unit tests of PushService (the seed's PushOrchestrator) against in-memory fakes of every port."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.push_service import PushService
from domain.idempotency import generate_idempotency_key
from domain.model import DraftOrder, OrderLine, PushStatus
from domain.ports import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorRejectedError,
    ConnectorSecurityError,
    ConnectorTransientError,
    ExportResult,
)
from domain.records import ConnectionRecord, PushLogEntry, order_to_json
from tests.fakes import (
    ExportHandler,
    FakeCipher,
    FakeClock,
    FakeConnector,
    FakeRegistry,
    FakeUnitOfWork,
    succeed,
)
from tests.push_log_fakes import FakePushLogWriter

ORG = uuid.UUID("11111111-1111-4111-8111-111111111111")
SECRET = "s3cr3t-Pa55w0rd!"
CONFIG = {"host": "erp.example.com", "password": SECRET}


def make_order(org: uuid.UUID = ORG, number: str = "SO-1001") -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org,
        order_number=number,
        customer_code="CUST-7",
        lines=(
            OrderLine(1, "P-100", Decimal("2"), Decimal("9.99")),
            OrderLine(2, "P-200", Decimal("1.5"), Decimal("100.00"), description="Bolts"),
        ),
    )


@dataclass
class World:
    uow: FakeUnitOfWork
    clock: FakeClock
    cipher: FakeCipher
    connector: FakeConnector
    orchestrator: PushService

    def rows(self, order: DraftOrder) -> list[PushLogEntry]:
        with self.uow:
            return list(self.uow.push_log.list_for_order(order.org_id, order.id))


def make_world(
    handler: ExportHandler = succeed,
    *,
    connector_type: str | None = "MOCK",
    config: Mapping[str, Any] = CONFIG,
    encrypt_for: uuid.UUID = ORG,
) -> World:
    uow = FakeUnitOfWork()
    cipher = FakeCipher()
    if connector_type is not None:
        blob = cipher.encrypt_config(config, org_id=encrypt_for, connector_type=connector_type)
        with uow:
            uow.connections.add(ConnectionRecord.new(ORG, connector_type, blob))
            uow.commit()
    connector = FakeConnector(handler)
    clock = FakeClock()
    orchestrator = PushService(
        uow=uow,
        writer=FakePushLogWriter(uow),
        registry=FakeRegistry({"MOCK": connector}),
        cipher=cipher,
        sleep=clock.sleep,
        clock=clock,
        monotonic=clock.monotonic,
    )
    return World(uow, clock, cipher, connector, orchestrator)


def failing(*errors: Exception) -> ExportHandler:
    """Handler raising ``errors`` in turn, then succeeding."""
    pending = list(errors)

    def handler(order: DraftOrder, config: Mapping[str, Any]) -> ExportResult:
        if pending:
            raise pending.pop(0)
        return succeed(order, config)

    return handler


def test_success_records_one_success_row_with_the_export_metadata() -> None:
    world = make_world()
    order = make_order()

    result = world.orchestrator.push_order(ORG, order)

    assert result.status == "SUCCESS"
    assert result.status is PushStatus.SUCCESS
    assert result.retry_count == 0
    assert result.attempt == 0
    assert result.connector_type == "MOCK"
    assert result.idempotency_key == generate_idempotency_key(ORG, order.id, 0)
    assert result.request_json == order_to_json(order)
    assert result.response_json == {
        "success": True,
        "export_id": str(order.id),
        "storage_key": f"fake/{order.id}.json",
        "connector_metadata": {"erp_order_id": "ERP-SO-1001"},
    }
    assert result.error_message is None
    assert result.latency_ms == 0
    assert result.lease_expires_at is None
    assert len(world.connector.calls) == 1
    exported, config = world.connector.calls[0]
    assert exported == order
    assert dict(config) == CONFIG
    assert world.rows(order) == [result]
    assert world.clock.sleeps == []


def test_latency_is_measured_around_the_export_call() -> None:
    world = make_world()

    def slow(order: DraftOrder, config: Mapping[str, Any]) -> ExportResult:
        world.clock.advance(0.25)
        return succeed(order, config)

    world.connector.handler = slow
    assert world.orchestrator.push_order(ORG, make_order()).latency_ms == 250


def test_connector_receives_a_config_that_prints_without_secrets() -> None:
    world = make_world()
    world.orchestrator.push_order(ORG, make_order())
    _, config = world.connector.calls[0]
    assert config["password"] == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in str(config)


def test_transient_errors_are_retried_with_exponential_backoff_then_succeed() -> None:
    world = make_world(
        failing(
            ConnectorTransientError("ERP unavailable"),
            ConnectorTransientError("ERP unavailable"),
            ConnectorTransientError("ERP unavailable"),
        )
    )
    order = make_order()

    result = world.orchestrator.push_order(ORG, order, max_retries=3, retry_delay_base=1.0)

    assert result.status == "SUCCESS"
    assert result.retry_count == 3
    assert world.clock.sleeps == [1.0, 2.0, 4.0]
    rows = world.rows(order)
    assert [r.status for r in rows] == ["RETRYING", "RETRYING", "RETRYING", "SUCCESS"]
    assert [r.retry_count for r in rows] == [0, 1, 2, 3]
    assert [r.idempotency_key for r in rows] == [
        generate_idempotency_key(ORG, order.id, n) for n in range(4)
    ]
    assert all(r.error_message == "ERP unavailable" for r in rows[:3])
    assert len(world.connector.calls) == 4


def test_retry_delay_base_scales_the_delays() -> None:
    world = make_world(failing(ConnectorTransientError("busy"), ConnectorTransientError("busy")))
    result = world.orchestrator.push_order(ORG, make_order(), retry_delay_base=0.5)
    assert result.status == "SUCCESS"
    assert world.clock.sleeps == [0.5, 1.0]


def test_permanent_error_fails_at_once_without_retrying() -> None:
    world = make_world(failing(ConnectorRejectedError("Customer CUST-7 is blocked")))
    order = make_order()

    result = world.orchestrator.push_order(ORG, order)

    assert result.status == "FAILED"
    assert result.error_message == "Customer CUST-7 is blocked"
    assert result.retry_count == 0
    assert world.clock.sleeps == []
    assert len(world.connector.calls) == 1
    assert [r.status for r in world.rows(order)] == ["FAILED"]


def test_config_error_is_permanent() -> None:
    world = make_world(failing(ConnectorConfigError("Invalid connector config: host: is required")))
    result = world.orchestrator.push_order(ORG, make_order())
    assert result.status == "FAILED"
    assert len(world.connector.calls) == 1


def test_exhausted_retries_end_in_failed() -> None:
    def always_down(order: DraftOrder, config: Mapping[str, Any]) -> ExportResult:
        raise ConnectorTransientError("ERP unavailable")

    world = make_world(always_down)
    order = make_order()

    result = world.orchestrator.push_order(ORG, order, max_retries=2)

    assert result.status == "FAILED"
    assert result.retry_count == 2
    assert result.error_message == "ERP unavailable (gave up after 3 attempts)"
    assert world.clock.sleeps == [1.0, 2.0]
    assert len(world.connector.calls) == 3
    assert [r.status for r in world.rows(order)] == ["RETRYING", "RETRYING", "FAILED"]


def test_max_retries_zero_means_a_single_attempt() -> None:
    world = make_world(failing(ConnectorTransientError("down")))
    result = world.orchestrator.push_order(ORG, make_order(), max_retries=0)
    assert result.status == "FAILED"
    assert world.clock.sleeps == []
    assert len(world.connector.calls) == 1


def test_second_push_returns_the_existing_success_without_calling_the_erp() -> None:
    world = make_world()
    order = make_order()

    first = world.orchestrator.push_order(ORG, order)
    second = world.orchestrator.push_order(ORG, order)

    assert second == first
    assert len(world.connector.calls) == 1
    assert len(world.rows(order)) == 1


def test_push_after_retries_returns_the_success_of_a_later_attempt() -> None:
    world = make_world(failing(ConnectorTransientError("busy")))
    order = make_order()
    first = world.orchestrator.push_order(ORG, order)
    assert first.attempt == 1

    again = world.orchestrator.push_order(ORG, order)

    assert again == first
    assert len(world.connector.calls) == 2


def test_check_idempotency_returns_the_processed_entry_or_none() -> None:
    world = make_world()
    order = make_order()
    key = world.orchestrator.generate_idempotency_key(ORG, order.id, 0)

    assert world.orchestrator.check_idempotency(key) is None
    result = world.orchestrator.push_order(ORG, order)
    assert world.orchestrator.check_idempotency(key) == result
    assert (
        world.orchestrator.check_idempotency(
            world.orchestrator.generate_idempotency_key(ORG, order.id, 1)
        )
        is None
    )


def test_generate_idempotency_key_delegates_to_the_domain() -> None:
    order_id = uuid.uuid4()
    assert PushService.generate_idempotency_key(str(ORG), order_id, 2) == (
        generate_idempotency_key(ORG, order_id, 2)
    )
    assert PushService.generate_idempotency_key(ORG, order_id) == (
        generate_idempotency_key(ORG, order_id, 0)
    )


def test_existing_failed_row_is_final_and_not_retried() -> None:
    world = make_world(failing(ConnectorRejectedError("rejected")))
    order = make_order()
    first = world.orchestrator.push_order(ORG, order)

    again = world.orchestrator.push_order(ORG, order)

    assert again == first
    assert again.status == "FAILED"
    assert len(world.connector.calls) == 1


def test_attempt_claimed_by_a_live_worker_is_left_alone() -> None:
    world = make_world()
    order = make_order()
    now = world.clock()
    key = generate_idempotency_key(ORG, order.id, 0)
    with world.uow:
        world.uow.push_log.claim(
            PushLogEntry.pending(
                org_id=ORG,
                draft_order_id=order.id,
                idempotency_key=key,
                attempt=0,
                now=now,
                lease_expires_at=now + timedelta(seconds=60),
            )
        )
        world.uow.commit()

    result = world.orchestrator.push_order(ORG, order)

    assert result.status == "PENDING"
    assert world.connector.calls == []


def test_attempt_whose_lease_expired_is_taken_over() -> None:
    world = make_world()
    order = make_order()
    then = world.clock() - timedelta(minutes=10)
    key = generate_idempotency_key(ORG, order.id, 0)
    with world.uow:
        world.uow.push_log.claim(
            PushLogEntry.pending(
                org_id=ORG,
                draft_order_id=order.id,
                idempotency_key=key,
                attempt=0,
                now=then,
                lease_expires_at=then + timedelta(seconds=60),
                connector_type="MOCK",
                request_json=order_to_json(order),
            )
        )
        world.uow.commit()

    result = world.orchestrator.push_order(ORG, order)

    assert result.status == "SUCCESS"
    assert result.idempotency_key == key
    assert len(world.connector.calls) == 1
    assert len(world.rows(order)) == 1


def test_resumed_push_waits_only_for_what_is_left_of_the_retry_delay() -> None:
    world = make_world()
    order = make_order()
    key0 = generate_idempotency_key(ORG, order.id, 0)
    earlier = world.clock() - timedelta(seconds=0.25)
    with world.uow:
        entry = world.uow.push_log.claim(
            PushLogEntry.pending(
                org_id=ORG,
                draft_order_id=order.id,
                idempotency_key=key0,
                attempt=0,
                now=earlier,
                lease_expires_at=earlier + timedelta(seconds=60),
            )
        )
        assert entry is not None
        world.uow.push_log.update_outcome(
            entry.id, status=PushStatus.RETRYING, now=earlier, error_message="busy"
        )
        world.uow.commit()

    result = world.orchestrator.push_order(ORG, order)

    assert result.status == "SUCCESS"
    assert result.attempt == 1
    assert world.clock.sleeps == [0.75]
    assert len(world.connector.calls) == 1


def test_no_active_connection_fails_with_a_clear_message() -> None:
    world = make_world(connector_type=None)
    order = make_order()

    result = world.orchestrator.push_order(ORG, order)

    assert result.status == "FAILED"
    assert result.error_message == f"No active ERP connection for organisation {ORG}"
    assert result.connector_type is None
    assert world.connector.calls == []
    assert world.clock.sleeps == []


def test_disabled_connection_is_not_used() -> None:
    world = make_world()
    with world.uow:
        active = world.uow.connections.get_active(ORG)
        assert active is not None
        world.uow.connections.disable(active.id, now=world.clock())
        world.uow.commit()

    result = world.orchestrator.push_order(ORG, make_order())

    assert result.status == "FAILED"
    assert "No active ERP connection" in (result.error_message or "")


def test_config_encrypted_for_another_organisation_does_not_decrypt() -> None:
    world = make_world(encrypt_for=uuid.uuid4())
    result = world.orchestrator.push_order(ORG, make_order())
    assert result.status == "FAILED"
    assert result.error_message is not None
    assert result.error_message.startswith("Could not decrypt the MOCK connection config")
    assert "authentication tag verification failed" in result.error_message
    assert world.connector.calls == []


def test_unknown_connector_type_fails_with_the_registry_message() -> None:
    # A row stored before its connector was uninstalled: the store refuses new ones.
    world = make_world(connector_type=None)
    blob = world.cipher.encrypt_config(CONFIG, org_id=ORG, connector_type="SAP")
    record = ConnectionRecord.new(ORG, "SAP", blob)
    world.uow.db.connections[record.id] = record
    result = world.orchestrator.push_order(ORG, make_order())
    assert result.status == "FAILED"
    assert result.error_message == "Unknown connector type: 'SAP'"
    assert result.connector_type == "SAP"


def test_export_result_without_success_is_a_failure() -> None:
    def refuses(order: DraftOrder, config: Mapping[str, Any]) -> ExportResult:
        return ExportResult(success=False, export_id=order.id, error_message="duplicate PO")

    world = make_world(refuses)
    result = world.orchestrator.push_order(ORG, make_order())
    assert result.status == "FAILED"
    assert result.error_message == "duplicate PO"


def test_unexpected_connector_exception_is_retried_and_logged_scrubbed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = make_world(failing(KeyError(f"erp_order_id {SECRET}")))
    order = make_order()
    result = world.orchestrator.push_order(ORG, order)
    assert (result.status, result.attempt) == ("SUCCESS", 1)
    assert world.clock.sleeps == [1.0]
    first = world.rows(order)[0]
    assert first.status == "RETRYING"
    assert first.error_message == "Unexpected KeyError in MOCK: 'erp_order_id ***'"
    logged = [r for r in caplog.records if "raised KeyError unexpectedly" in r.getMessage()]
    assert logged
    assert "Connector MOCK" in logged[0].getMessage()
    assert "Traceback" in logged[0].getMessage()
    assert SECRET not in caplog.text


def test_unexpected_exceptions_until_exhausted_end_failed() -> None:
    world = make_world(failing(*[TimeoutError("timed out")] * 4))
    result = world.orchestrator.push_order(ORG, make_order(), max_retries=2)
    assert result.status == "FAILED"
    assert result.error_message == (
        "Unexpected TimeoutError in MOCK: timed out (gave up after 3 attempts)"
    )
    assert world.clock.sleeps == [1.0, 2.0]


def test_a_plain_connector_error_is_retried() -> None:
    """The seed's connectors wrap every failure, a timeout too, in a plain ConnectorError."""
    world = make_world(failing(ConnectorError("MyERP export failed: timed out")))
    order = make_order()
    result = world.orchestrator.push_order(ORG, order)
    assert (result.status, result.attempt) == ("SUCCESS", 1)
    assert [(r.status, r.error_message) for r in world.rows(order)] == [
        ("RETRYING", "MyERP export failed: timed out"),
        ("SUCCESS", None),
    ]


@pytest.mark.parametrize(
    "error",
    [
        ConnectorError("unknown product", retryable=False),
        ConnectorTransientError("down, but the connector knows it is for good", retryable=False),
        ConnectorSecurityError("host key mismatch"),
    ],
    ids=["plain-retryable-false", "transient-retryable-false", "security"],
)
def test_errors_saying_not_retryable_fail_at_once(error: ConnectorError) -> None:
    world = make_world(failing(error))
    result = world.orchestrator.push_order(ORG, make_order())
    assert result.status == "FAILED"
    assert result.error_message == error.message
    assert world.clock.sleeps == []


def test_a_permanent_class_may_say_retryable_true() -> None:
    world = make_world(failing(ConnectorRejectedError("ERP busy: try again", retryable=True)))
    result = world.orchestrator.push_order(ORG, make_order())
    assert (result.status, result.attempt) == ("SUCCESS", 1)
    assert world.clock.sleeps == [1.0]


@pytest.mark.parametrize(
    "error",
    [
        ConnectorTransientError(f"login refused for password {SECRET}"),
        ConnectorRejectedError(f"bad credentials: {SECRET}"),
        RuntimeError(f"library echoed {SECRET}"),
    ],
    ids=["transient", "rejected", "unexpected"],
)
def test_secrets_never_reach_the_push_log(error: Exception) -> None:
    def leaky(order: DraftOrder, config: Mapping[str, Any]) -> ExportResult:
        raise error

    world = make_world(leaky, config={**CONFIG, "api_token": "tok-" + SECRET[::-1]})
    order = make_order()

    world.orchestrator.push_order(ORG, order, max_retries=1)

    rows = world.rows(order)
    assert rows
    dumped = json.dumps([r.__dict__ for r in rows], default=str)
    assert SECRET not in dumped
    assert SECRET[::-1] not in dumped
    assert all("***" in (r.error_message or "") for r in rows)
    assert all("password" not in json.dumps(r.request_json) for r in rows)


def test_secrets_echoed_in_export_metadata_are_scrubbed() -> None:
    def echoes(order: DraftOrder, config: Mapping[str, Any]) -> ExportResult:
        return ExportResult(
            success=True, export_id=order.id, connector_metadata={"debug": config["password"]}
        )

    world = make_world(echoes)
    result = world.orchestrator.push_order(ORG, make_order())
    assert result.response_json is not None
    assert result.response_json["connector_metadata"] == {"debug": "***"}


def test_order_of_another_organisation_is_refused() -> None:
    world = make_world()
    with pytest.raises(ValueError, match="belongs to organisation"):
        world.orchestrator.push_order(ORG, make_order(org=uuid.uuid4()))
    assert world.connector.calls == []


def test_invalid_retry_settings_are_refused() -> None:
    world = make_world()
    with pytest.raises(ValueError, match="max_retries"):
        world.orchestrator.push_order(ORG, make_order(), max_retries=-1)
    with pytest.raises(ValueError, match="retry_delay_base"):
        world.orchestrator.push_order(ORG, make_order(), retry_delay_base=-1.0)


def test_orchestrator_needs_a_session_or_a_unit_of_work() -> None:
    from entrypoints.orchestrator import PushOrchestrator

    with pytest.raises(TypeError, match="db_session or a uow"):
        PushOrchestrator()


@settings(max_examples=60, deadline=None)
@given(
    failures=st.integers(min_value=0, max_value=6),
    max_retries=st.integers(min_value=0, max_value=5),
    base=st.sampled_from([0.0, 0.1, 1.0, 2.5]),
)
def test_retry_schedule_property(failures: int, max_retries: int, base: float) -> None:
    world = make_world(failing(*[ConnectorTransientError("busy") for _ in range(failures)]))
    order = make_order()

    result = world.orchestrator.push_order(
        ORG, order, max_retries=max_retries, retry_delay_base=base
    )

    attempts = min(failures, max_retries) + 1
    assert result.status == ("SUCCESS" if failures <= max_retries else "FAILED")
    assert len(world.connector.calls) == attempts
    assert world.clock.sleeps == [base * 2**n for n in range(attempts - 1) if base > 0]
    assert [r.attempt for r in world.rows(order)] == list(range(attempts))
    # Whatever happened, a second push never calls the ERP again.
    assert world.orchestrator.push_order(ORG, order, max_retries=max_retries) == result
    assert len(world.connector.calls) == attempts
