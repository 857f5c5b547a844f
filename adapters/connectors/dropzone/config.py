"""The DROPZONE_JSON_V1 config schema and the cross-field checks beyond it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.connectors.dropzone.paths import remote_dir_problem
from adapters.connectors.dropzone.text import HOST_PATTERN, has_control_characters
from adapters.sftp import (
    HostKeyError,
    looks_like_private_key,
    parse_fingerprint,
    parse_host_key_line,
)
from domain.config_schema import (
    ConfigField,
    ConfigSchema,
    ErrorCode,
    FieldError,
    FieldType,
)

CONFIG_SCHEMA = ConfigSchema(
    fields=(
        ConfigField(
            "host",
            FieldType.STRING,
            required=True,
            description="SFTP server host name or IP address",
        ),
        ConfigField(
            "port",
            FieldType.INTEGER,
            default=22,
            minimum=1,
            maximum=65535,
            description="SFTP server TCP port",
        ),
        ConfigField(
            "username", FieldType.STRING, required=True, description="Login name on the SFTP server"
        ),
        ConfigField(
            "password",
            FieldType.STRING,
            secret=True,
            description="Password (password or private_key is required)",
        ),
        ConfigField(
            "private_key",
            FieldType.STRING,
            secret=True,
            description="Client private key text, OpenSSH or PEM (ed25519, ecdsa, RSA)",
        ),
        ConfigField(
            "private_key_passphrase",
            FieldType.STRING,
            secret=True,
            description="Passphrase of an encrypted private_key",
        ),
        ConfigField(
            "remote_dir",
            FieldType.STRING,
            required=True,
            description="Dropzone directory on the server; must already exist",
        ),
        ConfigField(
            "host_key",
            FieldType.STRING,
            description="Server public host key line, e.g. 'ssh-ed25519 AAAA...'",
        ),
        ConfigField(
            "host_key_fingerprint",
            FieldType.STRING,
            description="Server host key fingerprint 'SHA256:...' (ssh-keygen -lf)",
        ),
        ConfigField(
            "timeout_s",
            FieldType.NUMBER,
            default=10,
            minimum=0.1,
            maximum=300,
            description="Timeout in seconds for connecting and for each SFTP step",
        ),
    )
)


def _given(config: Mapping[str, Any], name: str) -> bool:
    """Tell whether field ``name`` has a value ("" counts as absent; the schema checks types)."""
    value = config.get(name)
    return value is not None and value != ""


def config_errors(config: object) -> list[FieldError]:
    """Return every problem of a DROPZONE_JSON_V1 ``config``, schema and cross-field.

    Codes are stable (``domain.config_schema.ErrorCode``); messages never contain values.
    """
    errors = CONFIG_SCHEMA.validate(config)
    if not isinstance(config, Mapping):
        return errors
    flagged = {error.path for error in errors}

    def check(name: str) -> str | None:
        """Return the value of ``name`` if it is given and passed the schema checks."""
        value = config.get(name)
        if name in flagged or not isinstance(value, str) or value == "":
            return None
        return value

    host = check("host")
    if host is not None and not HOST_PATTERN.match(host):
        errors.append(
            FieldError(
                "host",
                ErrorCode.INVALID,
                "must be a host name or IP address (no scheme, user or port)",
            )
        )
    username = check("username")
    if username is not None and (has_control_characters(username) or username != username.strip()):
        errors.append(
            FieldError(
                "username",
                ErrorCode.INVALID,
                "must not contain control characters or surrounding spaces",
            )
        )
    remote_dir = check("remote_dir")
    if remote_dir is not None:
        problem = remote_dir_problem(remote_dir)
        if problem is not None:
            errors.append(FieldError("remote_dir", ErrorCode.INVALID, problem))

    if not _given(config, "password") and not _given(config, "private_key"):
        errors.append(
            FieldError("$", ErrorCode.REQUIRED, "one of password, private_key is required")
        )
    private_key = check("private_key")
    if private_key is not None and not looks_like_private_key(private_key):
        errors.append(
            FieldError(
                "private_key",
                ErrorCode.INVALID,
                "must be an OpenSSH or PEM private key (-----BEGIN ... PRIVATE KEY-----)",
            )
        )
    if _given(config, "private_key_passphrase") and not _given(config, "private_key"):
        errors.append(
            FieldError(
                "private_key_passphrase",
                ErrorCode.INVALID,
                "is only used together with private_key",
            )
        )

    if not _given(config, "host_key") and not _given(config, "host_key_fingerprint"):
        errors.append(
            FieldError(
                "$",
                ErrorCode.REQUIRED,
                "one of host_key, host_key_fingerprint is required "
                "(the server's host key is never accepted unverified)",
            )
        )
    key = fingerprint = None
    host_key = check("host_key")
    if host_key is not None:
        try:
            key = parse_host_key_line(host_key)
        except HostKeyError as exc:
            errors.append(FieldError("host_key", ErrorCode.INVALID, str(exc)))
    host_key_fingerprint = check("host_key_fingerprint")
    if host_key_fingerprint is not None:
        try:
            fingerprint = parse_fingerprint(host_key_fingerprint)
        except HostKeyError as exc:
            errors.append(FieldError("host_key_fingerprint", ErrorCode.INVALID, str(exc)))
    if key is not None and fingerprint is not None and key.fingerprint != fingerprint:
        errors.append(
            FieldError(
                "host_key_fingerprint",
                ErrorCode.INVALID,
                "does not match host_key (they must name the same key)",
            )
        )
    return errors
