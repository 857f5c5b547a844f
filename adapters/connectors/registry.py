"""``ConnectorRegistry``: connector type name -> connector implementation.

Connectors are registered at start-up (seed: ``ConnectorRegistry.register``)
or discovered from the ``orderflow.connectors`` entry-point group, which is
how third-party packages plug in. ``get`` returns one shared instance per
type (connectors are stateless apart from connection pools), so resolving a
connector is a dictionary lookup.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import EntryPoint, entry_points
from typing import ClassVar

from domain.ports import ERPConnectorPort

ENTRY_POINT_GROUP = "orderflow.connectors"


class UnknownConnectorError(ValueError):
    """No connector is registered under the requested type (seed's ``ValueError``)."""

    def __init__(self, connector_type: str) -> None:
        super().__init__(f"Unknown connector type: {connector_type!r}")
        self.connector_type = connector_type


class ConnectorConflictError(ValueError):
    """Two different implementations claim the same connector type."""


def _describe(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _entry_point_origin(entry_point: EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    name = getattr(dist, "name", None) or "unknown distribution"
    return f"{name} ({entry_point.value})"


class ConnectorRegistry:
    """Central registry of connector implementations (class-level, process-wide)."""

    _classes: ClassVar[dict[str, type[ERPConnectorPort]]] = {}
    _instances: ClassVar[dict[str, ERPConnectorPort]] = {}
    _discovered: ClassVar[bool] = False
    _lock: ClassVar[threading.RLock] = threading.RLock()

    @classmethod
    def register(
        cls, connector_type: str, connector_cls: type[ERPConnectorPort], *, replace: bool = False
    ) -> None:
        """Register ``connector_cls`` under ``connector_type``.

        Registering the same class twice is harmless; a different class for a
        taken type raises ``ConnectorConflictError`` unless ``replace`` is set.
        """
        if not isinstance(connector_type, str) or not connector_type:
            raise ValueError("connector_type must be a non-empty string")
        if not (isinstance(connector_cls, type) and issubclass(connector_cls, ERPConnectorPort)):
            raise TypeError(
                f"{connector_cls!r} does not implement ERPConnectorPort "
                "(subclass BaseConnector or ERPConnectorPort)"
            )
        with cls._lock:
            existing = cls._classes.get(connector_type)
            if existing is not None and existing is not connector_cls and not replace:
                raise ConnectorConflictError(
                    f"Connector type {connector_type!r} is already registered to "
                    f"{_describe(existing)}; refusing {_describe(connector_cls)}"
                )
            cls._classes[connector_type] = connector_cls
            if existing is not connector_cls:
                cls._instances.pop(connector_type, None)

    @classmethod
    def get(cls, connector_type: str) -> ERPConnectorPort:
        """Return the connector for ``connector_type``.

        Raises ``UnknownConnectorError`` (a ``ValueError``) with the seed's
        message ``Unknown connector type: 'X'``.
        """
        instance = cls._instances.get(connector_type)
        if instance is not None:
            return instance
        return cls._create(connector_type)

    @classmethod
    def _create(cls, connector_type: str) -> ERPConnectorPort:
        with cls._lock:
            instance = cls._instances.get(connector_type)
            if instance is not None:
                return instance
            if connector_type not in cls._classes and not cls._discovered:
                cls.discover()
            connector_cls = cls._classes.get(connector_type)
            if connector_cls is None:
                raise UnknownConnectorError(connector_type)
            instance = connector_cls()
            cls._instances[connector_type] = instance
            return instance

    @classmethod
    def discover(cls, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register every connector advertised in the entry-point ``group``.

        Returns the types found. Two distributions claiming one type with
        different classes raise ``ConnectorConflictError`` naming both.
        """
        with cls._lock:
            claims: dict[str, tuple[EntryPoint, type[ERPConnectorPort]]] = {}
            for entry_point in entry_points(group=group):
                loaded = entry_point.load()
                if not (isinstance(loaded, type) and issubclass(loaded, ERPConnectorPort)):
                    raise TypeError(
                        f"entry point {_entry_point_origin(entry_point)} in {group!r} "
                        "does not name an ERPConnectorPort class"
                    )
                previous = claims.get(entry_point.name)
                if previous is not None and previous[1] is not loaded:
                    raise ConnectorConflictError(
                        f"Connector type {entry_point.name!r} is claimed by both "
                        f"{_entry_point_origin(previous[0])} and "
                        f"{_entry_point_origin(entry_point)}; uninstall one of them"
                    )
                claims[entry_point.name] = (entry_point, loaded)
            for name, (_, connector_cls) in claims.items():
                cls.register(name, connector_cls)
            cls._discovered = True
            return sorted(claims)

    @classmethod
    def known_types(cls) -> frozenset[str]:
        """Return every registered type (after entry-point discovery)."""
        with cls._lock:
            if not cls._discovered:
                cls.discover()
            return frozenset(cls._classes)

    @classmethod
    def unregister(cls, connector_type: str) -> None:
        """Remove ``connector_type`` (mainly for tests and plugin reloads)."""
        with cls._lock:
            cls._classes.pop(connector_type, None)
            cls._instances.pop(connector_type, None)

    @classmethod
    @contextmanager
    def isolated(cls) -> Iterator[None]:
        """Run a block with a scratch registry, restoring the previous state after."""
        with cls._lock:
            saved = (dict(cls._classes), dict(cls._instances), cls._discovered)
        try:
            yield
        finally:
            with cls._lock:
                cls._classes, cls._instances, cls._discovered = (
                    saved[0],
                    saved[1],
                    saved[2],
                )
