"""What ``orderflow connections create`` and ``connections list`` print of a config.

A config is shown masked: the values of its connector's secret fields are
``***``. A connector that declares no ``config_schema`` cannot say which values
are secret, so every value is masked and ``config_note`` says why; so is a
connection whose type no connector here is registered for. ``list`` decrypts
each connection to show it; a config that cannot be decrypted is shown as
``null`` with the reason in ``config_note``, and the listing goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from domain.config_schema import MASK, ConfigSchema, masked_config, no_schema_note
from domain.ports import ERPConnectorPort
from domain.records import ConnectionRecord


class Decryptor(Protocol):
    """What the views need of ``ConfigCipher``."""

    def decrypt_config(
        self, blob: bytes, /, *, org_id: Any, connector_type: str
    ) -> Mapping[str, Any]:
        """Decrypt a config blob of (org_id, connector_type)."""
        ...


class Connectors(Protocol):
    """What the views need of ``ConnectorRegistry``."""

    def get(self, connector_type: str, /) -> ERPConnectorPort:
        """The connector of ``connector_type``; ``ValueError`` if none is registered."""
        ...


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
    """``{"config": masked}`` plus a ``config_note`` when every value had to be masked."""
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


def listed_connections(
    records: Sequence[ConnectionRecord],
    cipher: Decryptor | None,
    connectors: Connectors,
    *,
    no_cipher_reason: str = "",
) -> list[dict[str, Any]]:
    """Every connection with its masked config (or why it cannot be shown)."""
    views = []
    for record in records:
        view = connection_view(record)
        if cipher is None:
            view.update(config=None, config_note=f"config not shown: {no_cipher_reason}")
            views.append(view)
            continue
        try:
            config = cipher.decrypt_config(
                record.config_encrypted,
                org_id=record.org_id,
                connector_type=record.connector_type,
            )
        except Exception as exc:  # one bad blob must not hide the other connections
            view.update(
                config=None,
                config_note=f"config not shown: cannot decrypt it ({type(exc).__name__}: {exc})",
            )
            views.append(view)
            continue
        try:
            connector: ERPConnectorPort | None = connectors.get(record.connector_type)
        except ValueError:
            connector = None
        view.update(config_view(record.connector_type, connector, config))
        views.append(view)
    return views
