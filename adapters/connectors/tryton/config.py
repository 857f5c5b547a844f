"""The TRYTON connector's config schema, stages and the checks beyond the schema."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from adapters.connectors.tryton.jsonrpc import (
    STAGE_AUTH,
    STAGE_PERMISSION,
    STAGE_REACHABLE,
    STAGE_VERSION,
)
from domain.config_schema import (
    ConfigField,
    ConfigSchema,
    ErrorCode,
    FieldError,
    FieldType,
)

CONNECTOR_TYPE = "TRYTON"
#: Oldest Tryton series this connector talks to.
MIN_SERIES: tuple[int, int] = (7, 0)
SALE_MODEL = "sale.sale"

STAGE_CONFIG = "config"
STAGE_DOCUMENT = "document"
#: The checks of test_connection, in order.
STAGES: tuple[str, ...] = (
    STAGE_CONFIG,
    STAGE_REACHABLE,
    STAGE_VERSION,
    STAGE_AUTH,
    STAGE_PERMISSION,
)

CONFIG_SCHEMA = ConfigSchema(
    fields=(
        ConfigField(
            "url",
            FieldType.STRING,
            required=True,
            description="Base URL of the Tryton server, e.g. http://erp.example.com:8000",
        ),
        ConfigField(
            "database", FieldType.STRING, required=True, description="Name of the Tryton database"
        ),
        ConfigField(
            "username",
            FieldType.STRING,
            required=True,
            description="Tryton login of the user that creates the sales",
        ),
        ConfigField(
            "password",
            FieldType.STRING,
            required=True,
            secret=True,
            description="That user's password",
        ),
        ConfigField(
            "timeout_s",
            FieldType.NUMBER,
            default=10,
            minimum=0.1,
            maximum=300,
            description="Timeout of each request, and of test_connection overall",
        ),
        ConfigField(
            "language",
            FieldType.STRING,
            default="en",
            description="Language of the session (Tryton's error messages)",
        ),
    )
)


def config_errors(config: object) -> list[FieldError]:
    """Return every problem of a TRYTON ``config`` (schema and URL checks, no values echoed)."""
    errors = CONFIG_SCHEMA.validate(config)
    if not isinstance(config, Mapping):
        return errors
    flagged = {error.path for error in errors}
    url = config.get("url")
    if "url" not in flagged and isinstance(url, str) and url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(
                FieldError(
                    "url", ErrorCode.INVALID, "must be an http:// or https:// URL with a host"
                )
            )
        elif parts.username is not None or parts.password is not None:
            errors.append(
                FieldError(
                    "url", ErrorCode.INVALID, "must not contain credentials (use username/password)"
                )
            )
        elif parts.query or parts.fragment:
            errors.append(FieldError("url", ErrorCode.INVALID, "must not have a query or fragment"))
    database = config.get("database")
    if (
        "database" not in flagged
        and isinstance(database, str)
        and database
        and ("/" in database or database != database.strip())
    ):
        errors.append(
            FieldError(
                "database",
                ErrorCode.INVALID,
                "must be a database name (no '/', no surrounding spaces)",
            )
        )
    return errors
