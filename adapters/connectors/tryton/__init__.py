"""The ``TRYTON`` connector: draft orders become sale orders in a Tryton ERP (JSON-RPC)."""

from adapters.connectors.tryton.connector import CONFIG_SCHEMA, CONNECTOR_TYPE, TrytonConnector
from adapters.connectors.tryton.jsonrpc import TrytonClient, TrytonUserError

__all__ = ["CONFIG_SCHEMA", "CONNECTOR_TYPE", "TrytonClient", "TrytonConnector", "TrytonUserError"]
