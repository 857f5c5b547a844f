"""Reusable contract test suites (see ``connector_contract.ConnectorContract``)."""
