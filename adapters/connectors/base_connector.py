"""Common functionality for connector implementations (seed: ``BaseConnector``).

Config validation helpers, latency measurement, standard ``TestResult``
building and logging that never prints a secret.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from domain.config_schema import ConfigSchema, ErrorCode, FieldError
from domain.config_schema import ConfigValidationError as ConfigValidationError
from domain.ports import ConnectorConfigError, ERPConnectorPort, TestResult
from domain.redaction import RedactedConfig, scrub


@dataclass
class LatencyTimer:
    """Elapsed time of a ``measure_latency`` block; live while the block runs."""

    operation: str
    started: float
    ended: float | None = None

    @property
    def latency_ms(self) -> float:
        """Milliseconds since the block started (or its total, once it ended)."""
        end = self.ended if self.ended is not None else time.perf_counter()
        return (end - self.started) * 1000.0


class BaseConnector(ERPConnectorPort):
    """Base class with the seed's helpers for connector implementations.

    Subclasses implement ``export`` and ``test_connection`` and declare
    ``connector_type`` and ``config_schema``.
    """

    config_schema = ConfigSchema()

    def __init__(self) -> None:
        connector_type = getattr(self, "connector_type", type(self).__name__)
        self.logger = logging.getLogger(f"orderflow.connectors.{connector_type}")

    # -- config ---------------------------------------------------------------

    def validate_required_fields(self, config: Mapping[str, Any], fields: Iterable[str]) -> None:
        """Raise ``ConnectorConfigError`` naming every missing or empty field.

        Only field names are reported, never values.
        """
        missing = [
            name
            for name in fields
            if name not in config or config[name] is None or config[name] == ""
        ]
        if missing:
            raise ConfigValidationError(
                FieldError(name, ErrorCode.REQUIRED, "is required") for name in missing
            )

    def validate_config(self, config: Any) -> None:
        """Validate ``config`` against ``config_schema``, reporting every error at once."""
        self.config_schema.check(config)

    def prepare_config(self, config: Mapping[str, Any]) -> RedactedConfig:
        """Validate, apply defaults and wrap ``config`` so it prints without secrets."""
        if not isinstance(config, Mapping):
            raise ConnectorConfigError("Invalid connector config: config must be a JSON object")
        self.validate_config(config)
        secrets = self.config_schema.secret_names
        if isinstance(config, RedactedConfig):
            secrets = secrets | config.secret_keys
        return RedactedConfig(self.config_schema.with_defaults(config), secrets)

    def safe_message(self, message: str, config: Mapping[str, Any]) -> str:
        """Return ``message`` with every secret value of ``config`` replaced by ``***``.

        For texts that come from libraries or servers, which may echo what
        they were sent. A ``config`` that is not a mapping holds no readable secret:
        the message is returned as is (``test_connection`` must never raise).
        """
        if not isinstance(config, Mapping):
            return message
        secret_names = self.config_schema.secret_names
        if isinstance(config, RedactedConfig):
            secret_names = secret_names | config.secret_keys
        secrets = [str(config[k]) for k in secret_names if config.get(k)]
        return scrub(message, secrets)

    # -- timing and results ---------------------------------------------------

    @contextmanager
    def measure_latency(self, operation: str) -> Iterator[LatencyTimer]:
        """Time the block; ``timer.latency_ms`` is readable inside and after it."""
        timer = LatencyTimer(operation=operation, started=time.perf_counter())
        try:
            yield timer
        finally:
            timer.ended = time.perf_counter()
            self.logger.debug("%s took %.1f ms", operation, timer.latency_ms)

    def build_test_result(
        self,
        success: bool,
        latency_ms: float = 0.0,
        error_message: str | None = None,
        *,
        stage: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> TestResult:
        """Build a ``TestResult`` in the standard shape."""
        return TestResult(
            success=success,
            latency_ms=latency_ms,
            error_message=error_message,
            stage=None if success else stage,
            details=dict(details or {}),
        )

    # -- logging --------------------------------------------------------------

    def log_config_summary(self, config: Mapping[str, Any]) -> None:
        """Log which fields a config has (seed: never log the config itself)."""
        self.logger.debug(
            "Connector type: %s; config has %d fields",
            getattr(self, "connector_type", "?"),
            len(config),
        )
