"""MockConnector: every mode, latency, transient-then-success, idempotency, auth."""

from __future__ import annotations

import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.connectors.mock import MODES, MockConnector
from domain.config_schema import ConfigValidationError, ErrorCode
from domain.idempotency import export_key
from domain.model import DraftOrder, OrderLine
from domain.ports import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorRejectedError,
    ConnectorTransientError,
    ExportResult,
    TestResult,
)

API_KEY = "mock-Api-Key-0123456789"


def order(number: str = "SO-1") -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=uuid.uuid4(),
        order_number=number,
        customer_code="C-1",
        lines=(
            OrderLine(1, "P-1", Decimal("1"), Decimal("2.00")),
            OrderLine(2, "P-2", Decimal("3"), Decimal("4.00")),
        ),
    )


@pytest.fixture
def mock() -> MockConnector:
    return MockConnector()


def test_declares_type_and_schema() -> None:
    assert MockConnector.connector_type == "MOCK"
    assert MockConnector.config_schema.secret_names == {"api_key", "expected_api_key"}
    assert MODES == ("success", "fail", "transient", "timeout")


# --- success ------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [{}, {"mode": "success"}])
def test_success_mode_stores_the_document(mock: MockConnector, config: dict[str, Any]) -> None:
    draft = order("SO-42")
    result = mock.export(draft, config)
    key = export_key(draft.org_id, draft.id)
    assert result == ExportResult(
        success=True,
        export_id=draft.id,
        storage_key=f"mock/{key}",
        connector_metadata={"erp_order_id": key, "call_number": 1},
    )
    assert mock.documents == {key: {"order_number": "SO-42", "lines": 2}}
    assert mock.calls == {key: 1}
    assert mock.document_count() == 1


def test_exporting_twice_keeps_one_document(mock: MockConnector) -> None:
    draft = order()
    first = mock.export(draft, {})
    second = mock.export(draft, {})
    assert first.storage_key == second.storage_key
    assert second.connector_metadata["call_number"] == 2
    assert mock.document_count() == 1
    mock.export(order(), {})
    assert mock.document_count() == 2


def test_concurrent_exports_of_one_order_give_one_document(mock: MockConnector) -> None:
    draft = order()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: mock.export(draft, {}), range(40)))
    assert all(r.success for r in results)
    assert mock.document_count() == 1
    assert mock.calls[export_key(draft.org_id, draft.id)] == 40
    assert sorted(r.connector_metadata["call_number"] for r in results) == list(range(1, 41))


# --- failure modes ------------------------------------------------------------------------


def test_fail_mode_is_a_permanent_rejection(mock: MockConnector) -> None:
    with pytest.raises(ConnectorRejectedError) as excinfo:
        mock.export(order(), {"mode": "fail"})
    assert str(excinfo.value) == "Mock ERP rejected the order"
    assert excinfo.value.stage == "export"
    assert excinfo.value.retryable is False
    assert mock.document_count() == 0


def test_transient_mode_fails_fail_times_then_succeeds(mock: MockConnector) -> None:
    config = {"mode": "transient", "fail_times": 2}
    draft, other = order(), order()
    for _ in range(2):
        with pytest.raises(ConnectorTransientError) as excinfo:
            mock.export(draft, config)
        assert excinfo.value.retryable is True
        assert excinfo.value.stage == "export"
    assert mock.document_count() == 0
    # Failures are counted per draft order: another order fails its own two times.
    with pytest.raises(ConnectorTransientError):
        mock.export(other, config)
    result = mock.export(draft, config)
    assert result.success is True
    assert result.connector_metadata["call_number"] == 3
    assert mock.document_count() == 1


def test_transient_mode_with_zero_fail_times_always_fails(mock: MockConnector) -> None:
    for _ in range(5):
        with pytest.raises(ConnectorTransientError, match="temporarily unavailable"):
            mock.export(order(), {"mode": "transient"})
    assert mock.document_count() == 0


def test_timeout_mode_waits_then_fails_transiently(mock: MockConnector) -> None:
    started = time.perf_counter()
    with pytest.raises(ConnectorTransientError) as excinfo:
        mock.export(order(), {"mode": "timeout", "timeout_ms": 40})
    assert time.perf_counter() - started >= 0.04
    assert str(excinfo.value) == "Mock ERP timed out after 40 ms"
    assert mock.document_count() == 0


def test_latency_is_added_to_export_and_test_connection(mock: MockConnector) -> None:
    started = time.perf_counter()
    mock.export(order(), {"latency_ms": 30})
    assert time.perf_counter() - started >= 0.03
    result = mock.test_connection({"latency_ms": 30})
    assert result.success is True
    assert result.latency_ms >= 30


def test_latency_delays_failures_too(mock: MockConnector) -> None:
    started = time.perf_counter()
    with pytest.raises(ConnectorRejectedError):
        mock.export(order(), {"mode": "fail", "latency_ms": 25})
    assert time.perf_counter() - started >= 0.025


# --- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "path", "code"),
    [
        ({"mode": "explode"}, "mode", ErrorCode.NOT_ALLOWED),
        ({"latency_ms": -1}, "latency_ms", ErrorCode.OUT_OF_RANGE),
        ({"latency_ms": math.nan}, "latency_ms", ErrorCode.INVALID),
        ({"fail_times": 1.5}, "fail_times", ErrorCode.WRONG_TYPE),
        ({"timeout_ms": 600_001}, "timeout_ms", ErrorCode.OUT_OF_RANGE),
        ({"api_key": 123}, "api_key", ErrorCode.WRONG_TYPE),
        ({"colour": "red"}, "colour", ErrorCode.UNKNOWN_FIELD),
    ],
)
def test_invalid_config(
    mock: MockConnector, config: dict[str, Any], path: str, code: ErrorCode
) -> None:
    with pytest.raises(ConfigValidationError) as excinfo:
        mock.export(order(), config)
    assert [(e.path, e.code) for e in excinfo.value.errors] == [(path, code)]
    assert mock.calls == {}
    result = mock.test_connection(config)
    assert (result.success, result.stage) == (False, "config")
    assert result.error_message == str(excinfo.value)


@pytest.mark.parametrize("config", [None, [], "mode=success", 7])
def test_non_object_config(mock: MockConnector, config: Any) -> None:
    with pytest.raises(ConnectorConfigError, match="config must be a JSON object"):
        mock.export(order(), config)
    result = mock.test_connection(config)
    assert isinstance(result, TestResult)
    assert (result.success, result.stage) == (False, "config")


# --- auth ---------------------------------------------------------------------------------


def test_matching_api_key_authenticates(mock: MockConnector) -> None:
    config = {"api_key": API_KEY, "expected_api_key": API_KEY}
    assert mock.export(order(), config).success is True
    assert mock.test_connection(config).success is True


@pytest.mark.parametrize("given_key", [None, "", "wrong-key-123456"])
def test_other_api_key_fails_to_authenticate(mock: MockConnector, given_key: str | None) -> None:
    config: dict[str, Any] = {"expected_api_key": API_KEY}
    if given_key is not None:
        config["api_key"] = given_key
    with pytest.raises(ConnectorRejectedError) as excinfo:
        mock.export(order(), config)
    assert str(excinfo.value) == "Mock ERP authentication failed"
    assert excinfo.value.stage == "auth"
    assert mock.document_count() == 0
    result = mock.test_connection(config)
    assert result == TestResult(
        success=False,
        latency_ms=result.latency_ms,
        error_message="Mock ERP authentication failed",
        stage="auth",
    )
    for text in (repr(excinfo.value), repr(result)):
        assert API_KEY not in text
        if given_key:
            assert given_key not in text


def test_without_expected_key_any_api_key_is_accepted(mock: MockConnector) -> None:
    assert mock.export(order(), {"api_key": "anything-goes"}).success is True


# --- test_connection ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["success", "transient", "timeout"])
def test_connection_succeeds_for_reachable_modes(mock: MockConnector, mode: str) -> None:
    result = mock.test_connection({"mode": mode, "timeout_ms": 60_000})
    assert result.success is True
    assert result.stage is None
    assert result.error_message is None
    assert 0 <= result.latency_ms < 1000  # timeout mode does not hang test_connection


def test_connection_in_fail_mode_reports_unreachable(mock: MockConnector) -> None:
    result = mock.test_connection({"mode": "fail"})
    assert (result.success, result.stage) == (False, "reachable")
    assert result.error_message == "Mock ERP is configured to fail"


def test_connection_exports_nothing(mock: MockConnector) -> None:
    mock.test_connection({})
    assert mock.calls == {}
    assert mock.document_count() == 0


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(-5, 5)
    | st.just(math.nan)
    | st.just(math.inf)
    | st.sampled_from([*MODES, "", "bogus"])
    | st.text(max_size=10)
)
field_names = st.sampled_from(
    ["mode", "latency_ms", "fail_times", "timeout_ms", "api_key", "expected_api_key", "x"]
)
configs = (
    st.dictionaries(field_names, json_scalars | st.lists(json_scalars, max_size=2), max_size=6)
    | st.none()
    | st.lists(json_scalars, max_size=3)
    | st.text(max_size=5)
    | st.integers()
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(config=configs)
def test_connection_never_raises(config: Any) -> None:
    result = MockConnector().test_connection(config)
    assert isinstance(result, TestResult)
    assert result.success is (result.stage is None)
    if not result.success:
        assert result.error_message
        assert result.stage in ("config", "auth", "reachable")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(config=configs)
def test_export_raises_only_connector_errors(config: Any) -> None:
    if isinstance(config, dict) and config.get("mode") == "timeout":
        config = {**config, "timeout_ms": 0}
    mock = MockConnector()
    try:
        result = mock.export(order(), config)
    except ConnectorError as exc:
        assert mock.document_count() == 0
        assert str(exc)
    else:
        assert result.success is True
        assert mock.document_count() == 1
