"""The connector contract (tests/contract/connector_contract.py) run for MOCK."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from adapters.connectors.mock import MockConnector
from adapters.connectors.registry import ConnectorRegistry
from domain.idempotency import export_key
from domain.model import DraftOrder
from tests.contract.connector_contract import ConnectorContract

API_KEY = "mock-contract-Api-Key-4711"
INVALID_CONFIG_KEY = "mock-contract-Invalid-Key-0815"
WRONG_KEY = "mock-contract-Wrong-Key-2342"


class TestMockConnectorContract(ConnectorContract):
    secret_field_names = frozenset({"api_key", "expected_api_key"})

    @pytest.fixture
    def connector(self) -> MockConnector:
        return MockConnector()

    @pytest.fixture
    def valid_config(self) -> Mapping[str, Any]:
        return {"mode": "success", "api_key": API_KEY, "expected_api_key": API_KEY}

    @pytest.fixture
    def invalid_config(self) -> Mapping[str, Any]:
        return {"mode": "explode", "latency_ms": -1, "api_key": INVALID_CONFIG_KEY}

    @pytest.fixture
    def wrong_credentials_config(self) -> Mapping[str, Any]:
        return {"api_key": WRONG_KEY, "expected_api_key": API_KEY}

    @pytest.fixture
    def count_documents(self, connector: MockConnector) -> Callable[[DraftOrder], int]:
        def count(draft_order: DraftOrder) -> int:
            key = export_key(draft_order.org_id, draft_order.id)
            return sum(1 for stored in connector.documents if stored == key)

        return count


def test_the_registry_serves_the_same_connector_class() -> None:
    assert type(ConnectorRegistry.get("MOCK")) is MockConnector


def test_default_secret_values_cover_every_configured_secret() -> None:
    """The suite's default ``secret_values`` picks the secrets out of all the configs."""
    pem = "-----BEGIN KEY-----\n" + "A" * 30 + "\n" + "B" * 30 + "\n-----END KEY-----\n"
    values = TestMockConnectorContract().default_secret_values(
        MockConnector(),
        {"api_key": API_KEY, "expected_api_key": API_KEY, "mode": "success"},
        {"api_key": INVALID_CONFIG_KEY, "mode": "explode", "latency_ms": -1},
        {"api_key": WRONG_KEY, "expected_api_key": ""},
        {"api_key": pem, "expected_api_key": 12345678},
    )
    assert values == sorted({API_KEY, INVALID_CONFIG_KEY, WRONG_KEY, pem, "A" * 30, "B" * 30})
