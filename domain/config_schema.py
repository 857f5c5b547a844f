"""Declarative connector configuration schemas.

Each connector declares its fields (type, required, secret). ``validate``
returns every problem at once, each with a field path and a stable code;
messages never contain the submitted values, so a secret cannot leak through
a validation error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from domain.errors import ConnectorConfigError

MASK = "***"


class FieldType(StrEnum):
    """The JSON types a configuration value may have."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    OBJECT = "object"
    ARRAY = "array"


class ErrorCode(StrEnum):
    """Stable machine-readable codes of configuration errors."""

    REQUIRED = "required"
    WRONG_TYPE = "wrong_type"
    EMPTY = "empty"
    NOT_ALLOWED = "not_allowed"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_FIELD = "unknown_field"
    NOT_AN_OBJECT = "not_an_object"
    INVALID = "invalid"


_PYTHON_TYPES: dict[FieldType, tuple[type, ...]] = {
    FieldType.STRING: (str,),
    FieldType.INTEGER: (int,),
    FieldType.NUMBER: (int, float),
    FieldType.BOOLEAN: (bool,),
    FieldType.OBJECT: (dict,),
    FieldType.ARRAY: (list, tuple),
}


@dataclass(frozen=True)
class FieldError:
    """One problem with one configuration field."""

    path: str
    code: ErrorCode
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.code.value}]"


@dataclass(frozen=True)
class ConfigField:
    """One declared configuration field of a connector."""

    name: str
    type: FieldType = FieldType.STRING
    required: bool = False
    secret: bool = False
    description: str = ""
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: Any) -> list[FieldError]:
        """Return the errors of ``value`` for this field (never echoing the value)."""
        python_types = _PYTHON_TYPES[self.type]
        # bool is an int subclass; a boolean is not an acceptable number.
        if isinstance(value, bool) and self.type is not FieldType.BOOLEAN:
            return [self._error(ErrorCode.WRONG_TYPE, f"must be of type {self.type.value}")]
        if not isinstance(value, python_types):
            return [self._error(ErrorCode.WRONG_TYPE, f"must be of type {self.type.value}")]
        if isinstance(value, float) and not math.isfinite(value):
            # NaN compares false with every limit: refuse it (and infinities) explicitly.
            return [self._error(ErrorCode.INVALID, "must be a finite number")]
        if isinstance(value, str) and self.required and not value.strip():
            return [self._error(ErrorCode.EMPTY, "must not be empty")]
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(choice) for choice in self.choices)
            return [self._error(ErrorCode.NOT_ALLOWED, f"must be one of: {allowed}")]
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return [self._error(ErrorCode.OUT_OF_RANGE, f"must be >= {self.minimum:g}")]
            if self.maximum is not None and value > self.maximum:
                return [self._error(ErrorCode.OUT_OF_RANGE, f"must be <= {self.maximum:g}")]
        return []

    def _error(self, code: ErrorCode, message: str) -> FieldError:
        return FieldError(self.name, code, message)


@dataclass(frozen=True)
class ConfigSchema:
    """The set of configuration fields a connector accepts."""

    fields: tuple[ConfigField, ...] = field(default_factory=tuple)
    allow_unknown: bool = False

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate config field names: {', '.join(duplicates)}")

    @property
    def secret_names(self) -> frozenset[str]:
        """Names of the fields whose values are secrets."""
        return frozenset(f.name for f in self.fields if f.secret)

    @property
    def required_names(self) -> tuple[str, ...]:
        """Names of the required fields, in declaration order."""
        return tuple(f.name for f in self.fields if f.required)

    def field_named(self, name: str) -> ConfigField | None:
        """Return the declared field called ``name``, if any."""
        return next((f for f in self.fields if f.name == name), None)

    def validate(self, config: Any) -> list[FieldError]:
        """Return every error in ``config``; an empty list means it is valid."""
        if not isinstance(config, Mapping):
            return [FieldError("$", ErrorCode.NOT_AN_OBJECT, "config must be a JSON object")]
        errors: list[FieldError] = []
        for declared in self.fields:
            if declared.name not in config or config[declared.name] is None:
                if declared.required:
                    errors.append(FieldError(declared.name, ErrorCode.REQUIRED, "is required"))
                continue
            errors.extend(declared.check(config[declared.name]))
        if not self.allow_unknown:
            known = {f.name for f in self.fields}
            for name in sorted(str(k) for k in config if k not in known):
                errors.append(FieldError(name, ErrorCode.UNKNOWN_FIELD, "is not a known field"))
        return errors

    def check(self, config: Any) -> None:
        """Raise ``ConfigValidationError`` listing every error, if there is any."""
        errors = self.validate(config)
        if errors:
            raise ConfigValidationError(errors)

    def with_defaults(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``config`` with declared defaults filled in for absent fields."""
        merged = dict(config)
        for declared in self.fields:
            if merged.get(declared.name) is None and declared.default is not None:
                merged[declared.name] = declared.default
        return merged

    def mask(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Return a copy of ``config`` safe to log or store: secret values replaced."""
        secrets = self.secret_names
        return {k: (MASK if k in secrets else v) for k, v in config.items()}

    def describe(self) -> list[dict[str, Any]]:
        """Return the schema as JSON-ready dicts (for the CLI and docs)."""
        return [
            {
                "name": f.name,
                "type": f.type.value,
                "required": f.required,
                "secret": f.secret,
                "description": f.description,
                **({"default": f.default} if f.default is not None else {}),
                **({"choices": list(f.choices)} if f.choices is not None else {}),
            }
            for f in self.fields
        ]


# -- connectors that declare no schema -------------------------------------------
#
# A connector written like the seed's ``MyConnector`` declares no ``config_schema``
# (``None``): its own code checks the config at export time. Nothing then says
# which values are secret, so every value is treated as one.


def config_errors(schema: ConfigSchema | None, config: Any) -> list[FieldError]:
    """Errors of ``config`` under ``schema``; without a schema it must only be a JSON object."""
    if schema is not None:
        return schema.validate(config)
    if not isinstance(config, Mapping):
        return [FieldError("$", ErrorCode.NOT_AN_OBJECT, "config must be a JSON object")]
    return []


def masked_config(schema: ConfigSchema | None, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` safe to show: secret values (without a schema: every value) masked."""
    if schema is None:
        return dict.fromkeys(config, MASK)
    return schema.mask(config)


def no_schema_note(connector_type: str) -> str:
    """Why a config is shown with every value masked."""
    return f"{connector_type} declares no config_schema: every value is masked"


class ConfigValidationError(ConnectorConfigError):
    """A connector configuration failed validation; ``errors`` lists every problem."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        detail = "; ".join(str(e) for e in self.errors)
        super().__init__(f"Invalid connector config: {detail}", stage="config")
