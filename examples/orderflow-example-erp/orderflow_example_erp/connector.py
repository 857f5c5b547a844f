"""``FileErpConnector``: an example third-party connector for a tiny file-based "ERP".

The ERP is a directory holding ``erp.json`` (``{"api_key_sha256": "<hex>"}``, created by
:func:`create_erp`) and one ``orders/<sha256 of the export key>.json`` per order. Config:
``directory`` and the secret ``api_key``. Exporting the same draft order again finds the
file and writes nothing, so an export is idempotent per (org, draft order).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.connectors.base_connector import BaseConnector
from domain.config_schema import ConfigField, ConfigSchema, FieldType
from domain.idempotency import export_key
from domain.ports import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorTransientError,
    ExportResult,
    TestResult,
)

CONNECTOR_TYPE = "EXAMPLE_FILE_ERP"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def create_erp(directory: Path, api_key: str) -> Path:
    """Create an empty file ERP in ``directory`` that accepts ``api_key``."""
    (directory / "orders").mkdir(parents=True, exist_ok=True)
    (directory / "erp.json").write_text(json.dumps({"api_key_sha256": _digest(api_key)}))
    return directory


def order_count(directory: Path, draft_order: Any) -> int:
    """How many order documents the ERP in ``directory`` holds for ``draft_order``."""
    name = _digest(export_key(draft_order.org_id, draft_order.id))
    return sum(1 for path in (directory / "orders").iterdir() if path.name.startswith(name))


class FileErpConnector(BaseConnector):
    """Writes one JSON document per draft order into a file ERP."""

    connector_type = CONNECTOR_TYPE
    config_schema = ConfigSchema(
        fields=(
            ConfigField(
                "directory",
                FieldType.STRING,
                required=True,
                description="Directory of the file ERP",
            ),
            ConfigField(
                "api_key",
                FieldType.STRING,
                required=True,
                secret=True,
                description="API key the ERP accepts",
            ),
        )
    )

    def _login(self, config: Mapping[str, Any]) -> Path:
        cfg = self.prepare_config(config)
        directory = Path(cfg["directory"])
        try:
            erp = json.loads((directory / "erp.json").read_text())
        except FileNotFoundError:
            raise ConnectorConfigError("No file ERP in that directory", stage="reachable") from None
        except OSError as exc:
            raise ConnectorTransientError(
                f"File ERP unavailable ({type(exc).__name__})", stage="reachable"
            ) from None
        if not hmac.compare_digest(erp["api_key_sha256"], _digest(cfg["api_key"])):
            raise ConnectorConfigError("The file ERP refused the API key", stage="auth")
        return directory

    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        """Write the order document unless the ERP has it already."""
        directory = self._login(config)
        key = export_key(draft_order.org_id, draft_order.id)
        target = directory / "orders" / f"{_digest(key)}.json"
        if not target.exists():
            document = {
                "reference": key,
                "order_number": draft_order.order_number,
                "customer": draft_order.customer_code,
                "lines": [
                    [line.product_code, str(line.quantity), str(line.unit_price)]
                    for line in draft_order.lines
                ],
            }
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(handle, "w") as file:
                json.dump(document, file)
            os.replace(temporary, target)
        return ExportResult(
            success=True,
            export_id=draft_order.id,
            storage_key=f"orders/{target.name}",
            connector_metadata={"erp_reference": key},
        )

    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        """Check the config, that the ERP exists and that it accepts the key."""
        with self.measure_latency("file_erp_connection_test") as timer:
            try:
                self._login(config)
            except ConnectorError as exc:
                return self.build_test_result(
                    False,
                    timer.latency_ms,
                    self.safe_message(exc.message, config),
                    stage=exc.stage or "config",
                )
            return self.build_test_result(True, timer.latency_ms)
