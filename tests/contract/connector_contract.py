"""Moved to the installed conformance kit :mod:`orderflow_conformance`; kept for old imports."""

from orderflow_conformance.connector_contract import *  # noqa: F403
from orderflow_conformance.connector_contract import __all__ as __all__
