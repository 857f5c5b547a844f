"""The ERP connector port: the contract every connector adapter implements.

Domain logic (``PushOrchestrator``, the push consumer) depends on this port
only, never on a concrete connector.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from domain.config_schema import ConfigSchema
from domain.errors import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorRejectedError,
    ConnectorSecurityError,
    ConnectorTransientError,
)

__all__ = [
    "ConnectorConfigError",
    "ConnectorError",
    "ConnectorRejectedError",
    "ConnectorSecurityError",
    "ConnectorTransientError",
    "ERPConnectorPort",
    "ExportResult",
    "TestResult",
]


@dataclass(frozen=True)
class ExportResult:
    """The outcome of exporting one draft order to an ERP.

    ``export_id`` is the draft order's id; ``storage_key`` says where the ERP
    (or dropzone) keeps the document; ``connector_metadata`` holds ERP
    references (never secrets).
    """

    success: bool
    export_id: Any
    storage_key: str | None = None
    connector_metadata: Mapping[str, Any] = field(default_factory=dict)
    error_message: str | None = None


@dataclass(frozen=True)
class TestResult:
    """The outcome of ``test_connection``: never raised, always returned.

    ``stage`` names the check that failed (for example ``"reachable"``,
    ``"auth"``, ``"write_permission"``) when ``success`` is false.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class despite the name

    success: bool
    latency_ms: float = 0.0
    error_message: str | None = None
    stage: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class ERPConnectorPort(ABC):
    """Abstract interface that all connectors must implement.

    ``connector_type`` is the registry name (``"DROPZONE_JSON_V1"``) and
    ``config_schema`` declares the configuration fields, which of them are
    required and which are secret. A connector may declare no schema (``None``,
    like the seed's ``MyConnector``): any JSON object is then accepted when a
    connection is created (the connector checks it at export), and every value
    of its config is treated as a secret (masked when shown, scrubbed from
    messages).
    """

    connector_type: ClassVar[str]
    config_schema: ClassVar[ConfigSchema | None] = None

    @abstractmethod
    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        """Export a draft order to the ERP.

        Must be idempotent per (org, draft order): exporting the same draft
        order again must not create a second ERP document. Raises a
        ``ConnectorError`` subclass on failure.
        """

    @abstractmethod
    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        """Test the connection without exporting; never raises."""
