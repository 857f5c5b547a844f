"""Declarative config schemas: every error at once, stable codes, values never echoed."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.config_schema import (
    MASK,
    ConfigField,
    ConfigSchema,
    ConfigValidationError,
    ErrorCode,
    FieldError,
    FieldType,
)
from domain.errors import ConnectorConfigError, ConnectorError

SECRET = "hunter2-Sup3r-Secret"

SCHEMA = ConfigSchema(
    fields=(
        ConfigField("host", FieldType.STRING, required=True, description="Server"),
        ConfigField("port", FieldType.INTEGER, default=22, minimum=1, maximum=65535),
        ConfigField("password", FieldType.STRING, secret=True),
        ConfigField("token", FieldType.STRING, required=True, secret=True),
        ConfigField("mode", FieldType.STRING, default="a", choices=("a", "b")),
        ConfigField("ratio", FieldType.NUMBER, minimum=0, maximum=1.5),
        ConfigField("verbose", FieldType.BOOLEAN, default=False),
        ConfigField("options", FieldType.OBJECT),
        ConfigField("hosts", FieldType.ARRAY),
    )
)
VALID: dict[str, Any] = {"host": "erp.example.com", "token": SECRET}


def codes(errors: list[FieldError]) -> list[tuple[str, ErrorCode]]:
    return [(e.path, e.code) for e in errors]


def test_valid_config_has_no_errors() -> None:
    assert SCHEMA.validate(VALID) == []
    full = {
        **VALID,
        "port": 2222,
        "password": "x",
        "mode": "b",
        "ratio": 1,
        "verbose": True,
        "options": {},
        "hosts": ["a", "b"],
    }
    assert SCHEMA.validate(full) == []
    SCHEMA.check(full)


@pytest.mark.parametrize("config", [None, [], "host=x", 42, ("host", "x")])
def test_non_object_config(config: Any) -> None:
    assert codes(SCHEMA.validate(config)) == [("$", ErrorCode.NOT_AN_OBJECT)]


def test_every_error_is_reported_at_once_in_declaration_order() -> None:
    config = {
        "port": "22",
        "mode": "c",
        "ratio": 2,
        "verbose": "yes",
        "options": [],
        "hosts": "a,b",
        "zeta": 1,
        "alpha": 2,
    }
    assert codes(SCHEMA.validate(config)) == [
        ("host", ErrorCode.REQUIRED),
        ("port", ErrorCode.WRONG_TYPE),
        ("token", ErrorCode.REQUIRED),
        ("mode", ErrorCode.NOT_ALLOWED),
        ("ratio", ErrorCode.OUT_OF_RANGE),
        ("verbose", ErrorCode.WRONG_TYPE),
        ("options", ErrorCode.WRONG_TYPE),
        ("hosts", ErrorCode.WRONG_TYPE),
        ("alpha", ErrorCode.UNKNOWN_FIELD),
        ("zeta", ErrorCode.UNKNOWN_FIELD),
    ]


def test_none_counts_as_absent() -> None:
    assert codes(SCHEMA.validate({"host": None, "token": SECRET, "port": None})) == [
        ("host", ErrorCode.REQUIRED)
    ]


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_blank_required_string_is_empty(value: str) -> None:
    assert codes(SCHEMA.validate({**VALID, "host": value})) == [("host", ErrorCode.EMPTY)]


def test_blank_optional_string_is_accepted() -> None:
    assert SCHEMA.validate({**VALID, "password": ""}) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("port", True), ("port", False), ("ratio", True), ("port", 22.0), ("port", "22")],
)
def test_booleans_and_floats_are_not_integers(name: str, value: Any) -> None:
    assert codes(SCHEMA.validate({**VALID, name: value})) == [(name, ErrorCode.WRONG_TYPE)]


def test_integers_are_numbers_and_tuples_are_arrays() -> None:
    assert SCHEMA.validate({**VALID, "ratio": 1, "hosts": ("a",)}) == []


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("port", 0, "must be >= 1"),
        ("port", 65536, "must be <= 65535"),
        ("ratio", -0.5, "must be >= 0"),
        ("ratio", 1.6, "must be <= 1.5"),
    ],
)
def test_range_limits(name: str, value: Any, message: str) -> None:
    [error] = SCHEMA.validate({**VALID, name: value})
    assert (error.path, error.code, error.message) == (name, ErrorCode.OUT_OF_RANGE, message)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value: float) -> None:
    """NaN compares false with every limit, so it must be refused explicitly."""
    [error] = SCHEMA.validate({**VALID, "ratio": value})
    assert error.path == "ratio"
    assert error.code in (ErrorCode.INVALID, ErrorCode.OUT_OF_RANGE)
    unbounded = ConfigSchema(fields=(ConfigField("x", FieldType.NUMBER),))
    assert codes(unbounded.validate({"x": value})) == [("x", ErrorCode.INVALID)]


def test_limits_are_inclusive() -> None:
    assert SCHEMA.validate({**VALID, "port": 1, "ratio": 0}) == []
    assert SCHEMA.validate({**VALID, "port": 65535, "ratio": 1.5}) == []


def test_choices_message_lists_the_choices_not_the_value() -> None:
    [error] = SCHEMA.validate({**VALID, "mode": SECRET})
    assert error.message == "must be one of: a, b"
    assert SECRET not in str(error)


def test_unknown_fields_are_allowed_when_the_schema_says_so() -> None:
    open_schema = ConfigSchema(fields=SCHEMA.fields, allow_unknown=True)
    assert open_schema.validate({**VALID, "extra": 1}) == []


# Upper-case letters and symbols: cannot occur by chance in the (lower-case) fixed messages.
secret_like = st.text(alphabet="QXZJKVW#@!%&~", min_size=6)


@given(value=secret_like, name=st.sampled_from(["host", "port", "mode", "ratio", "verbose"]))
def test_messages_never_echo_the_submitted_value(value: str, name: str) -> None:
    wrong = [value] if name == "host" else value  # wrong type, or not one of the choices
    config = {"host": "h", "token": value, name: wrong, "extra": value}
    errors = SCHEMA.validate(config)
    assert [e.path for e in errors] == [name, "extra"]
    for error in errors:
        assert value not in error.message
    with pytest.raises(ConfigValidationError) as excinfo:
        SCHEMA.check(config)
    assert value not in str(excinfo.value)
    assert value not in repr(excinfo.value)


def test_check_raises_config_validation_error_listing_everything() -> None:
    with pytest.raises(ConfigValidationError) as excinfo:
        SCHEMA.check({"port": 0, "password": SECRET})
    error = excinfo.value
    assert isinstance(error, ConnectorConfigError)
    assert isinstance(error, ConnectorError)
    assert error.retryable is False
    assert error.stage == "config"
    assert codes(list(error.errors)) == [
        ("host", ErrorCode.REQUIRED),
        ("port", ErrorCode.OUT_OF_RANGE),
        ("token", ErrorCode.REQUIRED),
    ]
    assert str(error) == (
        "Invalid connector config: host: is required [required]; "
        "port: must be >= 1 [out_of_range]; token: is required [required]"
    )
    assert SECRET not in str(error)
    assert SECRET not in repr(error)


def test_field_error_text() -> None:
    assert str(FieldError("a.b", ErrorCode.INVALID, "is odd")) == "a.b: is odd [invalid]"


def test_duplicate_field_names_are_refused() -> None:
    duplicated = (ConfigField("b"), ConfigField("a"), ConfigField("a"), ConfigField("b"))
    with pytest.raises(ValueError, match=r"^duplicate config field names: a, b$"):
        ConfigSchema(fields=duplicated)


def test_schema_introspection() -> None:
    assert SCHEMA.secret_names == frozenset({"password", "token"})
    assert SCHEMA.required_names == ("host", "token")
    field = SCHEMA.field_named("port")
    assert field is not None
    assert field.default == 22
    assert SCHEMA.field_named("nope") is None
    assert ConfigSchema().secret_names == frozenset()


def test_with_defaults_fills_absent_and_none_only() -> None:
    config = {"host": "h", "port": None, "mode": "b", "verbose": None}
    merged = SCHEMA.with_defaults(config)
    assert merged == {"host": "h", "port": 22, "mode": "b", "verbose": False}
    assert config == {"host": "h", "port": None, "mode": "b", "verbose": None}  # not mutated
    assert "password" not in merged  # no default, stays absent


def test_mask_replaces_secret_values_only() -> None:
    masked = SCHEMA.mask({"host": "h", "password": SECRET, "token": "", "extra": 1})
    assert masked == {"host": "h", "password": MASK, "token": MASK, "extra": 1}
    assert MASK == "***"


def test_describe_is_json_ready_and_complete() -> None:
    described = SCHEMA.describe()
    json.dumps(described)
    by_name = {entry["name"]: entry for entry in described}
    assert [entry["name"] for entry in described] == [f.name for f in SCHEMA.fields]
    assert by_name["host"] == {
        "name": "host",
        "type": "string",
        "required": True,
        "secret": False,
        "description": "Server",
    }
    assert by_name["port"]["default"] == 22
    assert by_name["mode"]["choices"] == ["a", "b"]
    assert by_name["token"]["secret"] is True
    assert "default" not in by_name["password"]
    assert "choices" not in by_name["password"]
