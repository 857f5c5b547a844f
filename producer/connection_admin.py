"""Administering an organisation's ERP connections: create, list, test, disable.

The use cases behind ``orderflow connections ...``. A connection's config is
checked against its connector's ``config_schema`` (any JSON object when the
connector declares none), encrypted bound to (org, connector type) and stored;
it is only ever shown masked (``domain.config_schema.masked_config``). The
composition root hands in the unit of work, the registered connectors and the
cipher.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from domain.config_schema import (
    MASK,
    ConfigSchema,
    ConfigValidationError,
    config_errors,
    masked_config,
    no_schema_note,
)
from domain.errors import OrderFlowError
from domain.model import check_connector_type
from domain.ports import ERPConnectorPort
from domain.records import ConnectionRecord, utc_now
from domain.repositories import UnitOfWork


class ConfigCipher(Protocol):
    """What connection administration needs of the config cipher."""

    def encrypt_config(
        self, config: Mapping[str, Any], /, *, org_id: Any, connector_type: str
    ) -> bytes:
        """Encrypt a config bound to (org_id, connector_type)."""
        ...

    def decrypt_config(
        self, blob: bytes, /, *, org_id: Any, connector_type: str
    ) -> Mapping[str, Any]:
        """Decrypt a config blob of (org_id, connector_type)."""
        ...


class Connectors(Protocol):
    """The registered connectors."""

    def get(self, connector_type: str, /) -> ERPConnectorPort:
        """The connector of ``connector_type``; ``ValueError`` if none is registered."""
        ...

    def known_types(self) -> Collection[str]:
        """Every registered connector type."""
        ...


class ConnectionNotFound(OrderFlowError):  # noqa: N818 - reads as the outcome
    """No such connection (or no active one for the organisation)."""


def connection_view(record: ConnectionRecord) -> dict[str, Any]:
    """The connection's fields that are never secret."""
    return {
        "id": str(record.id),
        "org_id": str(record.org_id),
        "connector_type": record.connector_type,
        "status": str(record.status),
        "last_test_at": record.last_test_at.isoformat() if record.last_test_at else None,
    }


def schema_of(connector: ERPConnectorPort) -> ConfigSchema | None:
    """The connector's declared ``config_schema``, or None if it declares none."""
    schema = getattr(connector, "config_schema", None)
    return schema if isinstance(schema, ConfigSchema) else None


def config_view(
    connector_type: str, connector: ERPConnectorPort | None, config: Mapping[str, Any]
) -> dict[str, Any]:
    """``{"config": masked}`` plus a ``config_note`` when every value had to be masked.

    A connector without a ``config_schema`` cannot say which values are secret,
    so every value is masked; so is a config whose type no connector here is
    registered for.
    """
    if connector is None:
        return {
            "config": dict.fromkeys(config, MASK),
            "config_note": (
                f"no connector is registered for {connector_type} here: every value is masked"
            ),
        }
    schema = schema_of(connector)
    view: dict[str, Any] = {"config": masked_config(schema, config)}
    if schema is None:
        view["config_note"] = no_schema_note(connector_type)
    return view


@dataclass
class ConnectionAdmin:
    """The connection use cases over one unit of work.

    ``cipher`` builds the config cipher when a use case needs one: it reads the
    master key, and ``list`` still works (without configs) when there is none;
    ``cipher_errors`` are the errors that mean "no usable key".
    """

    uow: UnitOfWork
    connectors: Connectors
    cipher: Callable[[], ConfigCipher]
    cipher_errors: tuple[type[Exception], ...] = ()
    clock: Callable[[], datetime] = utc_now

    def create(self, org_id: uuid.UUID, connector_type: str, config: object) -> dict[str, Any]:
        """Check, encrypt and store a new connection; return its view with the masked config."""
        check_connector_type(connector_type, self.connectors.known_types())
        connector = self.connectors.get(connector_type)
        # A connector without a config_schema checks its config at export: any object goes.
        errors = config_errors(schema_of(connector), config)
        if errors:
            raise ConfigValidationError(errors)
        assert isinstance(config, Mapping)  # config_errors refuses anything else
        blob = self.cipher().encrypt_config(config, org_id=org_id, connector_type=connector_type)
        with self.uow as uow:
            record = uow.connections.add(ConnectionRecord.new(org_id, connector_type, blob))
            uow.commit()
        return {**connection_view(record), **config_view(connector_type, connector, config)}

    def list(self, org_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
        """Every connection (of ``org_id``, or all), masked config or why it is not shown."""
        with self.uow as uow:
            records = uow.connections.list(org_id)
        try:
            cipher: ConfigCipher | None = self.cipher()
            reason = ""
        except self.cipher_errors as exc:  # e.g. no ENCRYPTION_MASTER_KEY: list without configs
            cipher, reason = None, str(exc)
        return [self._listed(record, cipher, reason) for record in records]

    def _listed(
        self, record: ConnectionRecord, cipher: ConfigCipher | None, no_cipher_reason: str
    ) -> dict[str, Any]:
        view = connection_view(record)
        if cipher is None:
            view.update(config=None, config_note=f"config not shown: {no_cipher_reason}")
            return view
        try:
            config = cipher.decrypt_config(
                record.config_encrypted, org_id=record.org_id, connector_type=record.connector_type
            )
        except Exception as exc:  # one bad blob must not hide the other connections
            view.update(
                config=None,
                config_note=f"config not shown: cannot decrypt it ({type(exc).__name__}: {exc})",
            )
            return view
        try:
            connector: ERPConnectorPort | None = self.connectors.get(record.connector_type)
        except ValueError:
            connector = None
        view.update(config_view(record.connector_type, connector, config))
        return view

    def test(self, org_id: uuid.UUID) -> dict[str, Any]:
        """Run the active connection's ``test_connection``; a success is recorded."""
        with self.uow as uow:
            record = uow.connections.get_active(org_id)
        if record is None:
            raise ConnectionNotFound(f"No active ERP connection for organisation {org_id}")
        config = self.cipher().decrypt_config(
            record.config_encrypted, org_id=record.org_id, connector_type=record.connector_type
        )
        result = self.connectors.get(record.connector_type).test_connection(config)
        if result.success:
            with self.uow as uow:
                uow.connections.mark_tested(record.id, at=self.clock())
                uow.commit()
        return {
            "connection_id": str(record.id),
            "connector_type": record.connector_type,
            "success": result.success,
            "stage": result.stage,
            "error_message": result.error_message,
            "latency_ms": round(result.latency_ms, 1),
        }

    def disable(self, connection_id: uuid.UUID) -> dict[str, Any]:
        """Disable a connection; return its view."""
        with self.uow as uow:
            record = uow.connections.disable(connection_id, now=self.clock())
            uow.commit()
        if record is None:
            raise ConnectionNotFound(f"no ERP connection with id {connection_id}")
        return connection_view(record)
