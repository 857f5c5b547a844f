"""Moved to the installed conformance kit :mod:`orderflow_conformance`; kept for old imports."""

from orderflow_conformance.connector_contract import (
    ENTRY_POINT_GROUP,
    MIN_SECRET_CHARS,
    ConnectorContract,
    assert_no_secret,
    load_connector_class,
    make_draft_order,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MIN_SECRET_CHARS",
    "ConnectorContract",
    "assert_no_secret",
    "load_connector_class",
    "make_draft_order",
]
