"""A connector written like the seed's Step 1 ``MyConnector``, for integration tests.

No ``config_schema``; ``validate_required_fields`` at export; every failure of the ERP
call, a timeout too, wrapped in a plain ``ConnectorError`` (the seed's pattern). Its
ERP times out ``timeouts`` times per draft order, then answers; every call is
recorded with its start time. (The verbatim Step 1 class lives in
``tests/unit/test_seed_connector_examples.py``, registered there as ``MY_ERP``; this
one is registered as ``SEED_STYLE_ERP`` so the two never collide in one process.)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from typing import Any

from adapters.connectors.base_connector import BaseConnector
from domain.ports import ConnectorError, ExportResult, TestResult

SEED_STYLE_TYPE = "SEED_STYLE_ERP"
#: The config of Step 4's tests.
SEED_CONFIG = {
    "api_url": "https://myerp.example.com/api",
    "api_key": "test-key-of-the-seed-style-erp",
    "company_id": "ACME",
}


class SeedStyleConnector(BaseConnector):
    """Step 1's shape; the ERP behind it times out ``timeouts`` times per order."""

    #: Timeouts per draft order before the ERP answers (a class attribute: the
    #: registry builds the instance).
    timeouts = 2

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        #: draft order id -> wall-clock start time of every ERP call
        self.calls: dict[uuid.UUID, list[float]] = defaultdict(list)

    def export(self, draft_order: Any, config: dict[str, Any]) -> ExportResult:
        """Export like the seed: validate, transform, send; wrap every failure."""
        self.validate_required_fields(config, ["api_url", "api_key", "company_id"])
        payload = {"id": draft_order.id, "order_number": draft_order.order_number}
        try:
            response = self._send_to_erp(payload, config)
            return ExportResult(
                success=True,
                export_id=draft_order.id,
                storage_key=f"myerp/exports/{draft_order.id}.json",
                connector_metadata={
                    "erp_order_id": response["order_id"],
                    "erp_order_number": response["order_number"],
                },
            )
        except Exception as e:
            raise ConnectorError(f"MyERP export failed: {e}") from None

    def test_connection(self, config: dict[str, Any]) -> TestResult:
        """Succeed if the required fields are there."""
        with self.measure_latency("seed_style_test") as timer:
            self.validate_required_fields(config, ["api_url", "api_key", "company_id"])
            return self.build_test_result(success=True, latency_ms=timer.latency_ms)

    def _send_to_erp(self, payload: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            calls = self.calls[payload["id"]]
            calls.append(time.time())
            number = len(calls)
        if number <= self.timeouts:
            raise TimeoutError("the MyERP API did not answer within 5 s")
        return {"order_id": f"MY-{number}", "order_number": payload["order_number"]}
