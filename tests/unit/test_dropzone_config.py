"""DROPZONE_JSON_V1 configuration: every error at once, stable codes, no secret anywhere."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from adapters.connectors.dropzone_json_v1 import (
    CONFIG_SCHEMA,
    DropzoneJsonV1Connector,
    config_errors,
)
from domain.config_schema import ConfigValidationError, ErrorCode
from domain.errors import ConnectorConfigError
from domain.redaction import RedactedConfig

PASSWORD = "s3cr3t-Pässword!"
PASSPHRASE = "my key passphrase"
HOST_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)
OTHER_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)
PRIVATE_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()),
    )
    .decode()
)
SECRETS = (PASSWORD, PASSPHRASE, PRIVATE_KEY, *PRIVATE_KEY.splitlines()[1:-1])


def valid_config(**overrides) -> dict:
    config = {
        "host": "sftp.example.com",
        "username": "orderflow",
        "password": PASSWORD,
        "remote_dir": "/inbound/orders",
        "host_key": HOST_KEY,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def codes(errors) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for error in errors:
        result.setdefault(error.path, set()).add(error.code.value)
    return result


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        if secret.strip():
            assert secret not in text


def test_valid_configs_pass() -> None:
    assert config_errors(valid_config()) == []
    key_auth = valid_config(
        password=None, private_key=PRIVATE_KEY, private_key_passphrase=PASSPHRASE
    )
    assert config_errors(key_auth) == []
    fp_only = valid_config(host_key=None, host_key_fingerprint="SHA256:" + "A" * 43)
    assert config_errors(fp_only) == []
    both = valid_config(port=2222, timeout_s=2.5, host="[::1]", remote_dir="outbox")
    assert config_errors(both) == []


def test_defaults_are_applied() -> None:
    cfg = DropzoneJsonV1Connector().prepare_config(valid_config())
    assert cfg["port"] == 22
    assert cfg["timeout_s"] == 10


def test_every_error_is_reported_at_once_with_stable_codes() -> None:
    config = {
        "host": "sftp://user@host:22",
        "port": 70000,
        "username": "",
        "private_key": "ssh-ed25519 AAAA not a private key",
        "remote_dir": "/data/../etc",
        "host_key": "ssh-dss AAAA",
        "host_key_fingerprint": "MD5:aa:bb",
        "timeout_s": 0,
        "colour": "blue",
    }
    with pytest.raises(ConfigValidationError) as info:
        DropzoneJsonV1Connector().validate_config(config)
    error = info.value
    assert isinstance(error, ConnectorConfigError)
    assert error.stage == "config"
    assert codes(error.errors) == {
        "host": {"invalid"},
        "port": {"out_of_range"},
        "username": {"empty"},
        "private_key": {"invalid"},
        "remote_dir": {"invalid"},
        "host_key": {"invalid"},
        "host_key_fingerprint": {"invalid"},
        "timeout_s": {"out_of_range"},
        "colour": {"unknown_field"},
    }
    assert "colour: is not a known field [unknown_field]" in str(error)


def test_missing_everything() -> None:
    found = codes(config_errors({}))
    assert found == {
        "host": {"required"},
        "username": {"required"},
        "remote_dir": {"required"},
        "$": {"required"},
    }
    messages = [e.message for e in config_errors({}) if e.path == "$"]
    assert any("password, private_key" in m for m in messages)
    assert any("host_key, host_key_fingerprint" in m for m in messages)


@pytest.mark.parametrize("empty", [None, ""])
def test_neither_password_nor_key_lists_both_fields(empty) -> None:
    config = valid_config(password=empty)
    errors = config_errors(config)
    assert [(e.path, e.code) for e in errors] == [("$", ErrorCode.REQUIRED)]
    assert "one of password, private_key is required" in errors[0].message


def test_host_key_is_never_optional() -> None:
    errors = config_errors(valid_config(host_key=None))
    assert [(e.path, e.code) for e in errors] == [("$", ErrorCode.REQUIRED)]
    assert "never accepted unverified" in errors[0].message


def test_host_key_and_fingerprint_must_name_the_same_key() -> None:
    from adapters.sftp import parse_host_key_line

    other_fp = parse_host_key_line(OTHER_KEY).fingerprint
    errors = config_errors(valid_config(host_key_fingerprint=other_fp))
    assert [(e.path, e.code) for e in errors] == [("host_key_fingerprint", ErrorCode.INVALID)]
    same_fp = parse_host_key_line(HOST_KEY).fingerprint
    assert config_errors(valid_config(host_key_fingerprint=same_fp)) == []


def test_passphrase_without_key_is_flagged() -> None:
    errors = config_errors(valid_config(private_key_passphrase=PASSPHRASE))
    assert [(e.path, e.code) for e in errors] == [("private_key_passphrase", ErrorCode.INVALID)]


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("port", "22", "wrong_type"),
        ("port", True, "wrong_type"),
        ("port", 0, "out_of_range"),
        ("timeout_s", "10", "wrong_type"),
        ("timeout_s", 301, "out_of_range"),
        ("password", 1234, "wrong_type"),
        ("host", "host name", "invalid"),
        ("host", "user@host", "invalid"),
        ("host", "-oProxyCommand=x", "invalid"),
        ("username", "bob\n", "invalid"),
        ("remote_dir", "/a\x00b", "invalid"),
        ("remote_dir", "/a\nb", "invalid"),
        ("remote_dir", "a\\..\\b", "invalid"),
        ("remote_dir", " /drop", "invalid"),
        ("remote_dir", "/" + "a" * 1100, "invalid"),
        ("remote_dir", "   ", "empty"),
        ("host_key_fingerprint", "SHA256:short", "invalid"),
    ],
)
def test_single_field_errors(field: str, value, code: str) -> None:
    errors = config_errors(valid_config(**{field: value}))
    assert codes(errors) == {field: {code}}


def test_not_an_object() -> None:
    assert codes(config_errors(["host"])) == {"$": {"not_an_object"}}
    with pytest.raises(ConnectorConfigError):
        DropzoneJsonV1Connector().prepare_config("host=x")  # type: ignore[arg-type]


def test_secrets_are_declared() -> None:
    assert CONFIG_SCHEMA.secret_names == {"password", "private_key", "private_key_passphrase"}
    described = {d["name"]: d for d in CONFIG_SCHEMA.describe()}
    assert described["port"]["default"] == 22
    assert described["timeout_s"]["default"] == 10


def test_no_secret_in_validation_errors_or_reprs() -> None:
    # Secrets in the wrong places and of the wrong shape: still never echoed.
    config = valid_config(
        host=PASSWORD,
        username=PASSPHRASE + "\n",
        private_key=PASSWORD,
        private_key_passphrase=PASSPHRASE,
        remote_dir=PASSWORD + "/..",
        host_key=PASSWORD,
        host_key_fingerprint=PASSPHRASE,
    )
    connector = DropzoneJsonV1Connector()
    with pytest.raises(ConfigValidationError) as info:
        connector.validate_config(config)
    rendered = str(info.value) + repr(info.value) + repr(info.value.errors)
    assert_no_secret(rendered)
    ok = valid_config(password=None, private_key=PRIVATE_KEY, private_key_passphrase=PASSPHRASE)
    cfg = connector.prepare_config(ok)
    assert isinstance(cfg, RedactedConfig)
    assert_no_secret(repr(cfg) + str(cfg) + f"{cfg}")
    params = connector.connection_params(cfg)
    assert_no_secret(repr(params))
    assert params.private_key == PRIVATE_KEY  # the value is there, just not printed
    assert_no_secret(repr(connector))


def test_connection_params_normalise_the_host() -> None:
    params = DropzoneJsonV1Connector.connection_params(
        DropzoneJsonV1Connector().prepare_config(valid_config(host="[::1]", port=2222))
    )
    assert params.host == "::1"
    assert params.where == "[::1]:2222"
