"""BaseConnector helpers: required fields, config preparation, latency, TestResult, logging."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import pytest

from adapters.connectors.base_connector import BaseConnector, LatencyTimer
from domain.config_schema import (
    MASK,
    ConfigField,
    ConfigSchema,
    ConfigValidationError,
    ErrorCode,
    FieldType,
)
from domain.ports import ConnectorConfigError, ERPConnectorPort, ExportResult, TestResult
from domain.redaction import RedactedConfig

PASSWORD = "Base-Conn3ctor-Pa55"


class DemoConnector(BaseConnector):
    connector_type = "DEMO_TEST"
    config_schema = ConfigSchema(
        fields=(
            ConfigField("host", FieldType.STRING, required=True),
            ConfigField("port", FieldType.INTEGER, default=443, minimum=1, maximum=65535),
            ConfigField("password", FieldType.STRING, secret=True),
        )
    )

    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        return ExportResult(success=True, export_id=None)

    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        return self.build_test_result(True)


class Untyped(BaseConnector):
    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        raise NotImplementedError

    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        raise NotImplementedError


@pytest.fixture
def connector() -> DemoConnector:
    return DemoConnector()


def test_it_is_an_erp_connector_port(connector: DemoConnector) -> None:
    assert isinstance(connector, ERPConnectorPort)


def test_port_methods_are_abstract() -> None:
    class Incomplete(BaseConnector):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


# --- validate_required_fields -------------------------------------------------------------


def test_required_fields_lists_every_missing_name_in_order(connector: DemoConnector) -> None:
    config = {"api_url": "", "company_id": None, "password": PASSWORD}
    with pytest.raises(ConfigValidationError) as excinfo:
        connector.validate_required_fields(config, ["api_url", "api_key", "password", "company_id"])
    error = excinfo.value
    assert isinstance(error, ConnectorConfigError)
    assert [(e.path, e.code) for e in error.errors] == [
        ("api_url", ErrorCode.REQUIRED),
        ("api_key", ErrorCode.REQUIRED),
        ("company_id", ErrorCode.REQUIRED),
    ]
    assert str(error) == (
        "Invalid connector config: api_url: is required [required]; "
        "api_key: is required [required]; company_id: is required [required]"
    )
    assert PASSWORD not in repr(error)


def test_required_fields_accepts_falsy_non_empty_values(connector: DemoConnector) -> None:
    connector.validate_required_fields({"a": 0, "b": False, "c": " ", "d": []}, "abcd")
    connector.validate_required_fields({}, [])


# --- validate_config / prepare_config / safe_message -------------------------------------


def test_validate_config_uses_the_schema(connector: DemoConnector) -> None:
    connector.validate_config({"host": "h"})
    with pytest.raises(ConfigValidationError) as excinfo:
        connector.validate_config({"port": 0, "password": 1})
    assert [(e.path, e.code) for e in excinfo.value.errors] == [
        ("host", ErrorCode.REQUIRED),
        ("port", ErrorCode.OUT_OF_RANGE),
        ("password", ErrorCode.WRONG_TYPE),
    ]


def test_prepare_config_applies_defaults_and_masks_secrets(connector: DemoConnector) -> None:
    cfg = connector.prepare_config({"host": "h", "password": PASSWORD})
    assert isinstance(cfg, RedactedConfig)
    assert dict(cfg) == {"host": "h", "port": 443, "password": PASSWORD}
    assert PASSWORD not in repr(cfg)
    assert cfg.masked()["password"] == MASK


def test_prepare_config_keeps_extra_secret_keys_of_a_redacted_input(
    connector: DemoConnector,
) -> None:
    wrapped = RedactedConfig({"host": "h"}, frozenset({"host"}))
    cfg = connector.prepare_config(wrapped)
    assert cfg.secret_keys == frozenset({"host", "password"})
    assert repr(cfg) == "RedactedConfig({'host': '***', 'port': 443})"


@pytest.mark.parametrize("config", [None, [], "host=h", 1])
def test_prepare_config_refuses_non_objects(connector: DemoConnector, config: Any) -> None:
    with pytest.raises(ConnectorConfigError, match="config must be a JSON object"):
        connector.prepare_config(config)


def test_safe_message_scrubs_secret_values(connector: DemoConnector) -> None:
    config = {"host": "h", "password": PASSWORD}
    message = f"server said: bad password {PASSWORD!r} for h"
    assert connector.safe_message(message, config) == "server said: bad password '***' for h"


def test_safe_message_also_scrubs_the_secret_keys_of_a_redacted_config(
    connector: DemoConnector,
) -> None:
    config = RedactedConfig({"host": "erp.internal", "password": PASSWORD}, frozenset({"host"}))
    assert connector.safe_message(f"erp.internal {PASSWORD}", config) == "*** ***"


@pytest.mark.parametrize("config", [None, ["password"], "password"])
def test_safe_message_of_a_non_mapping_config_returns_the_message(
    connector: DemoConnector, config: Any
) -> None:
    assert connector.safe_message("connection failed", config) == "connection failed"


# --- measure_latency ----------------------------------------------------------------------


def test_measure_latency_is_live_inside_and_frozen_after(connector: DemoConnector) -> None:
    with connector.measure_latency("op") as timer:
        assert isinstance(timer, LatencyTimer)
        first = timer.latency_ms
        time.sleep(0.02)
        inside = timer.latency_ms
        assert inside >= first + 15
        assert timer.ended is None
    total = timer.latency_ms
    assert timer.ended is not None
    assert total >= 20
    time.sleep(0.01)
    assert timer.latency_ms == total
    assert timer.operation == "op"


def test_measure_latency_stops_and_logs_even_when_the_block_raises(
    connector: DemoConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="orderflow.connectors.DEMO_TEST")
    with pytest.raises(RuntimeError, match="boom"), connector.measure_latency("failing") as timer:
        time.sleep(0.005)
        raise RuntimeError("boom")
    assert timer.ended is not None
    assert timer.latency_ms >= 5
    [record] = [r for r in caplog.records if r.name == "orderflow.connectors.DEMO_TEST"]
    assert record.levelno == logging.DEBUG
    assert record.getMessage().startswith("failing took ")
    assert record.getMessage().endswith(" ms")


# --- build_test_result --------------------------------------------------------------------


def test_build_test_result_success_has_no_stage(connector: DemoConnector) -> None:
    result = connector.build_test_result(True, 12.5, stage="auth")
    assert result == TestResult(success=True, latency_ms=12.5, stage=None, details={})


def test_build_test_result_failure_keeps_stage_and_message(connector: DemoConnector) -> None:
    details = {"host": "h"}
    result = connector.build_test_result(
        False, 3.0, "Connection refused", stage="reachable", details=details
    )
    assert result.success is False
    assert (result.latency_ms, result.error_message, result.stage) == (
        3.0,
        "Connection refused",
        "reachable",
    )
    details["host"] = "changed"
    assert result.details == {"host": "h"}  # copied, not shared


def test_build_test_result_defaults(connector: DemoConnector) -> None:
    assert connector.build_test_result(False) == TestResult(
        success=False, latency_ms=0.0, error_message=None, stage=None, details={}
    )


# --- logging ------------------------------------------------------------------------------


def test_logger_is_named_after_the_connector_type() -> None:
    assert DemoConnector().logger.name == "orderflow.connectors.DEMO_TEST"
    assert Untyped().logger.name == "orderflow.connectors.Untyped"


def test_log_config_summary_logs_the_count_not_the_values(
    connector: DemoConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connector.log_config_summary({"host": "erp.internal", "password": PASSWORD})
    assert caplog.messages == ["Connector type: DEMO_TEST; config has 2 fields"]
    assert PASSWORD not in caplog.text
    assert "erp.internal" not in caplog.text
