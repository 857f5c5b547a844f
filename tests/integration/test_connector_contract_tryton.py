"""The conformance kit (orderflow_conformance) run for TRYTON, against a real trytond.

Documents are counted in the server's SQLite database (``infra.tryton.count_sales``),
not through the connector under test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from adapters.connectors.tryton import TrytonConnector
from domain.idempotency import export_key
from domain.model import DraftOrder
from infra.tryton import TrytonServer, count_sales
from orderflow_conformance import ConnectorContract

INVALID_CONFIG_PASSWORD = "tryton-contract-Invalid-Password-1"
WRONG_PASSWORD = "tryton-contract-Wrong-Password-2"


class TestTrytonContract(ConnectorContract):
    secret_field_names = frozenset({"password"})

    @pytest.fixture
    def connector(self) -> Iterator[TrytonConnector]:
        with TrytonConnector() as instance:
            yield instance

    @pytest.fixture
    def valid_config(self, tryton_server: TrytonServer) -> Mapping[str, Any]:
        return tryton_server.as_config(timeout_s=10)

    @pytest.fixture
    def invalid_config(self) -> Mapping[str, Any]:
        return {
            "url": "ftp://erp.example",
            "database": "",
            "username": "admin",
            "password": INVALID_CONFIG_PASSWORD,
            "timeout_s": 0,
        }

    @pytest.fixture
    def wrong_credentials_config(self, tryton_server: TrytonServer) -> Mapping[str, Any]:
        return tryton_server.as_config(password=WRONG_PASSWORD)

    @pytest.fixture
    def count_documents(self, tryton_server: TrytonServer) -> Callable[[DraftOrder], int]:
        def count(draft_order: DraftOrder) -> int:
            return count_sales(
                tryton_server, reference=export_key(draft_order.org_id, draft_order.id)
            )

        return count
