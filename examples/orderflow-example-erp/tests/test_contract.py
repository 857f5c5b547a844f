"""OrderFlow's conformance kit, run for this package's connector (found by its entry point)."""

import pytest
from orderflow_example_erp import create_erp, order_count

from orderflow_conformance import ConnectorContract

API_KEY = "example-erp-Api-Key-1234"


class TestFileErpContract(ConnectorContract):
    connector_type = "EXAMPLE_FILE_ERP"
    secret_field_names = frozenset({"api_key"})

    @pytest.fixture
    def erp(self, tmp_path):
        return create_erp(tmp_path, API_KEY)

    @pytest.fixture
    def valid_config(self, erp):
        return {"directory": str(erp), "api_key": API_KEY}

    @pytest.fixture
    def invalid_config(self):
        return {"directory": 42, "api_key": "example-erp-Invalid-Key-5678"}

    @pytest.fixture
    def wrong_credentials_config(self, erp):
        return {"directory": str(erp), "api_key": "example-erp-Wrong-Key-9012"}

    @pytest.fixture
    def count_documents(self, erp):
        return lambda draft_order: order_count(erp, draft_order)
