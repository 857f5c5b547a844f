"""``MockConnector``: an in-memory ERP for tests, demos and benchmarks.

Modes: ``success``, ``fail`` (rejected by the ERP, permanent), ``transient``
(fails ``fail_times`` times per draft order, then succeeds; ``fail_times``
of 0 means it always fails transiently) and ``timeout`` (waits
``timeout_ms`` then fails transiently). ``latency_ms`` adds a delay to
every call. Exports are idempotent: a second export of the same draft order
replaces the stored document instead of adding one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from adapters.connectors.base_connector import BaseConnector
from domain.config_schema import ConfigField, ConfigSchema, FieldType
from domain.idempotency import export_key
from domain.ports import (
    ConnectorRejectedError,
    ConnectorTransientError,
    ExportResult,
    TestResult,
)

MODES = ("success", "fail", "transient", "timeout")


class MockConnector(BaseConnector):
    """An ERP that lives in memory; its documents are visible to tests."""

    connector_type = "MOCK"
    config_schema = ConfigSchema(
        fields=(
            ConfigField(
                "mode",
                FieldType.STRING,
                default="success",
                choices=MODES,
                description="Behaviour of every export call",
            ),
            ConfigField(
                "latency_ms",
                FieldType.NUMBER,
                default=0,
                minimum=0,
                maximum=600_000,
                description="Delay added to every call",
            ),
            ConfigField(
                "fail_times",
                FieldType.INTEGER,
                default=0,
                minimum=0,
                description="transient mode: failures per draft order before success",
            ),
            ConfigField(
                "timeout_ms",
                FieldType.NUMBER,
                default=100,
                minimum=0,
                maximum=600_000,
                description="timeout mode: how long a call hangs before failing",
            ),
            ConfigField(
                "api_key",
                FieldType.STRING,
                secret=True,
                description="A credential the mock checks if expected_api_key is set",
            ),
            ConfigField(
                "expected_api_key",
                FieldType.STRING,
                secret=True,
                description="When set, calls with another api_key fail to authenticate",
            ),
        )
    )

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        #: export key -> exported document (what the "ERP" holds)
        self.documents: dict[str, dict[str, Any]] = {}
        #: export key -> number of export calls seen (including failed ones)
        self.calls: dict[str, int] = {}

    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        """Export ``draft_order`` according to the configured mode."""
        cfg = self.prepare_config(config)
        key = export_key(draft_order.org_id, draft_order.id)
        with self._lock:
            self.calls[key] = self.calls.get(key, 0) + 1
            call_number = self.calls[key]
        self._sleep_ms(cfg["latency_ms"])
        self._check_auth(cfg)
        mode = cfg["mode"]
        if mode == "fail":
            raise ConnectorRejectedError("Mock ERP rejected the order", stage="export")
        if mode == "timeout":
            self._sleep_ms(cfg["timeout_ms"])
            raise ConnectorTransientError(
                f"Mock ERP timed out after {cfg['timeout_ms']:g} ms", stage="export"
            )
        if mode == "transient" and (cfg["fail_times"] == 0 or call_number <= cfg["fail_times"]):
            raise ConnectorTransientError("Mock ERP temporarily unavailable", stage="export")
        document = {
            "order_number": draft_order.order_number,
            "lines": len(getattr(draft_order, "lines", ()) or ()),
        }
        with self._lock:
            self.documents[key] = document
        return ExportResult(
            success=True,
            export_id=draft_order.id,
            storage_key=f"mock/{key}",
            connector_metadata={"erp_order_id": key, "call_number": call_number},
        )

    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        """Succeed unless the config is invalid, auth fails or the mode is ``fail``."""
        with self.measure_latency("mock_connection_test") as timer:
            try:
                cfg = self.prepare_config(config)
                self._sleep_ms(cfg["latency_ms"])
                self._check_auth(cfg)
            except Exception as exc:  # test_connection never raises
                stage = getattr(exc, "stage", None) or "config"
                return self.build_test_result(
                    False, timer.latency_ms, self.safe_message(str(exc), config), stage=stage
                )
            if cfg["mode"] == "fail":
                return self.build_test_result(
                    False, timer.latency_ms, "Mock ERP is configured to fail", stage="reachable"
                )
            return self.build_test_result(True, timer.latency_ms)

    def document_count(self) -> int:
        """How many distinct documents the mock ERP holds."""
        with self._lock:
            return len(self.documents)

    @staticmethod
    def _sleep_ms(milliseconds: float) -> None:
        if milliseconds > 0:
            time.sleep(milliseconds / 1000.0)

    @staticmethod
    def _check_auth(cfg: Mapping[str, Any]) -> None:
        expected = cfg.get("expected_api_key")
        if expected and cfg.get("api_key") != expected:
            raise ConnectorRejectedError("Mock ERP authentication failed", stage="auth")
