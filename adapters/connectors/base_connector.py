"""Common functionality for connector implementations (seed: ``BaseConnector``).

Config validation helpers, latency measurement, standard ``TestResult``
building and logging that never prints a secret.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Self

from domain.config_schema import ConfigValidationError as ConfigValidationError
from domain.config_schema import ErrorCode, FieldError, config_errors
from domain.ports import ConnectorConfigError, ConnectorError, ERPConnectorPort, TestResult
from domain.redaction import RedactedConfig, scrub, undeclared_secret_values


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
    ``connector_type`` and (best) ``config_schema``; without a schema every
    config value counts as secret (see ``ERPConnectorPort``).
    """

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

    def config_errors(self, config: object) -> list[FieldError]:
        """Return every problem of ``config``; subclasses add cross-field checks."""
        return config_errors(self.config_schema, config)

    def validate_config(self, config: Any) -> None:
        """Raise ``ConfigValidationError`` listing every problem of ``config`` at once."""
        errors = self.config_errors(config)
        if errors:
            raise ConfigValidationError(errors)

    def prepare_config(self, config: Mapping[str, Any]) -> RedactedConfig:
        """Validate, apply defaults and wrap ``config`` so it prints without secrets."""
        if not isinstance(config, Mapping):
            raise ConnectorConfigError("Invalid connector config: config must be a JSON object")
        self.validate_config(config)
        schema = self.config_schema
        secrets = frozenset(config) if schema is None else schema.secret_names
        if isinstance(config, RedactedConfig):
            secrets = secrets | config.secret_keys
        values = dict(config) if schema is None else schema.with_defaults(config)
        return RedactedConfig(values, secrets)

    def safe_message(self, message: str, config: Mapping[str, Any]) -> str:
        """Return ``message`` with every secret value of ``config`` replaced by ``***``.

        For texts that come from libraries or servers, which may echo what
        they were sent. A ``config`` that is not a mapping holds no readable secret:
        the message is returned as is (``test_connection`` must never raise).
        """
        if not isinstance(config, Mapping):
            return message
        schema = self.config_schema
        if schema is None:  # every value is a secret
            return scrub(message, undeclared_secret_values(config))
        secret_names = schema.secret_names
        if isinstance(config, RedactedConfig):
            secret_names = secret_names | config.secret_keys
        secrets = [str(config[k]) for k in secret_names if config.get(k)]
        return scrub(message, secrets)

    def sanitised_error(self, exc: ConnectorError, config: object) -> ConnectorError:
        """Return ``exc``, or a copy (same class and attributes) with secrets masked out.

        For errors whose text came from a server or library; field errors of a
        ``ConfigValidationError`` are scrubbed one by one.
        """
        if not isinstance(config, Mapping):
            return exc
        message = self.safe_message(exc.message, config)
        if message == exc.message:
            return exc
        if isinstance(exc, ConfigValidationError):
            return ConfigValidationError(
                replace(error, message=self.safe_message(error.message, config))
                for error in exc.errors
            )
        clean = copy.copy(exc)
        clean.message = message
        clean.args = (message,)
        return clean

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Release connections or sessions the connector keeps (none by default)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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

    def run_staged_test(
        self,
        operation: str,
        config: Any,
        checks: Callable[[dict[str, Any], list[str]], None],
        stages: Sequence[str],
    ) -> TestResult:
        """Run a staged ``test_connection``; never raises.

        ``checks(details, passed)`` runs the checks in the order of ``stages``, appending
        each stage's name to ``passed`` once it passed and filling ``details``; it raises a
        ``ConnectorError`` with the failing ``stage`` on failure. Any other exception is
        reported at the first stage not passed. Messages and string details are scrubbed
        of the config's secrets; ``details["stages_passed"]`` lists the stages passed.
        """
        details: dict[str, Any] = {"stages_passed": []}
        passed: list[str] = details["stages_passed"]
        with self.measure_latency(operation) as timer:
            try:
                checks(details, passed)
            except ConnectorError as exc:
                error = self.sanitised_error(exc, config)
                return self.build_test_result(
                    False,
                    timer.latency_ms,
                    error.message,
                    stage=error.stage or stages[0],
                    details=self._scrubbed(details, config),
                )
            except Exception as exc:  # test_connection never raises
                self.logger.error("Connection test failed unexpectedly: %s", type(exc).__name__)
                stage = next((name for name in stages if name not in passed), stages[-1])
                return self.build_test_result(
                    False,
                    timer.latency_ms,
                    f"Unexpected {type(exc).__name__} during the {stage} check",
                    stage=stage,
                    details=self._scrubbed(details, config),
                )
            return self.build_test_result(
                True, timer.latency_ms, details=self._scrubbed(details, config)
            )

    def _scrubbed(self, details: dict[str, Any], config: object) -> dict[str, Any]:
        """Mask secrets in the string details (a secret pasted into the wrong field)."""
        if not isinstance(config, Mapping):
            return details
        return {
            key: self.safe_message(value, config) if isinstance(value, str) else value
            for key, value in details.items()
        }

    # -- logging --------------------------------------------------------------

    def log_config_summary(self, config: Mapping[str, Any]) -> None:
        """Log which fields a config has (seed: never log the config itself)."""
        self.logger.debug(
            "Connector type: %s; config has %d fields",
            getattr(self, "connector_type", "?"),
            len(config),
        )
