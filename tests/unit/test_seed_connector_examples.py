"""The seed document's connector examples, run as the seed writes them.

"Implementing a New Connector": Step 1's ``MyConnector``, Step 2's registration and
Step 4's three tests, and the "Unit Tests" snippet of "Testing". The only changes are
the import paths (the seed's ``connectors.*`` are ``domain.ports``,
``adapters.connectors.*`` here) and the bodies the seed leaves as "Implementation
here", made trivial. The seed's layout is kept too (``# fmt: off``), so its code can be
compared line by line.

After them, the retry promise of "Retry Logic" for a connector written like Step 1,
which wraps every failure, a timeout too, in a plain ``ConnectorError``.
"""

# ruff: noqa: I001, UP006, UP035, B904, E402, F811
from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal

import pytest

from domain.model import DraftOrder, OrderLine

# -- Step 1: Create Implementation --------------------------------------------------------
# fmt: off
from typing import Any, Dict
from domain.ports import ExportResult, TestResult, ConnectorError
from adapters.connectors.base_connector import BaseConnector

class MyConnector(BaseConnector):
    """
    My ERP Connector - Integrates with MyERP system.

    Configuration:
        - api_url: MyERP API endpoint
        - api_key: Authentication key
        - company_id: Company identifier
    """

    def export(self, draft_order: Any, config: Dict[str, Any]) -> ExportResult:
        """Export draft order to MyERP."""
        # Validate config
        self.validate_required_fields(
            config,
            ["api_url", "api_key", "company_id"]
        )

        # Transform draft_order to MyERP format
        payload = self._transform_order(draft_order, config)

        # Send to MyERP API
        try:
            response = self._send_to_erp(payload, config)

            return ExportResult(
                success=True,
                export_id=draft_order.id,
                storage_key=f"myerp/exports/{draft_order.id}.json",
                connector_metadata={
                    "erp_order_id": response["order_id"],
                    "erp_order_number": response["order_number"]
                }
            )
        except Exception as e:
            raise ConnectorError(f"MyERP export failed: {e}")

    def test_connection(self, config: Dict[str, Any]) -> TestResult:
        """Test connection to MyERP API."""
        with self.measure_latency("myerp_connection_test") as timer:
            try:
                self.validate_required_fields(
                    config,
                    ["api_url", "api_key", "company_id"]
                )

                # Attempt simple API call
                self._test_api_connection(config)

                return self.build_test_result(
                    success=True,
                    latency_ms=timer.latency_ms
                )
            except Exception as e:
                return self.build_test_result(
                    success=False,
                    error_message=str(e),
                    latency_ms=timer.latency_ms
                )

    def _transform_order(self, draft_order, config):
        """Transform draft order to MyERP format."""
        # Implementation here (trivial: the fields the ERP answers with)
        return {"order_id": f"MY-{draft_order.id}", "order_number": draft_order.order_number}

    def _send_to_erp(self, payload, config):
        """Send payload to MyERP API."""
        # Implementation here (trivial: the ERP accepts the order)
        return {"order_id": payload["order_id"], "order_number": payload["order_number"]}

    def _test_api_connection(self, config):
        """Test API connection."""
        # Implementation here
        pass
# fmt: on

# -- Step 2: Register Connector -----------------------------------------------------------
# "At application startup": here, when this module's tests start (a module-level call
# would run when pytest collects the module, and be seen by every module before it).
from adapters.connectors.registry import ConnectorRegistry


@pytest.fixture(scope="module", autouse=True)
def _application_startup() -> Iterator[None]:
    """Step 2's registration, for this module's tests only."""
    # fmt: off
    # Register connector
    ConnectorRegistry.register("MY_ERP", MyConnector)
    # fmt: on
    yield
    ConnectorRegistry.unregister("MY_ERP")


@pytest.fixture
def mock_draft_order() -> DraftOrder:
    """The draft order Step 4's tests export (the seed uses it without defining it)."""
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=uuid.uuid4(),
        order_number="SO-MY-1",
        customer_code="CUST-MY",
        lines=(OrderLine(1, "P-1", Decimal("2"), Decimal("9.99")),),
    )


# -- Step 4: Write Tests ------------------------------------------------------------------
# ``test_my_connector_missing_config`` names ``mock_draft_order`` without asking for the
# fixture: the name is the module's fixture function, as in the seed; the export raises
# at config validation before it touches the order.
# fmt: off
import pytest
from domain.ports import ConnectorError

def test_my_connector_export_success(mock_draft_order):
    connector = MyConnector()
    config = {
        "api_url": "https://myerp.example.com/api",
        "api_key": "test-key",
        "company_id": "ACME"
    }

    result = connector.export(mock_draft_order, config)

    assert result.success is True
    assert result.export_id == mock_draft_order.id

def test_my_connector_missing_config():
    connector = MyConnector()
    config = {"api_url": "https://example.com"}  # Missing api_key

    with pytest.raises(ConnectorError):
        connector.export(mock_draft_order, config)

def test_my_connector_test_connection():
    connector = MyConnector()
    config = {
        "api_url": "https://myerp.example.com/api",
        "api_key": "test-key",
        "company_id": "ACME"
    }

    result = connector.test_connection(config)

    assert result.success is True
    assert result.latency_ms > 0
# fmt: on


# -- Testing / Unit Tests: the MockConnector snippet --------------------------------------
# ``draft_order`` is a module-level name in the seed's snippet (no fixture argument).
from adapters.connectors.mock import MockConnector

draft_order = DraftOrder(
    id=uuid.uuid4(),
    org_id=uuid.uuid4(),
    order_number="SO-SNIPPET-1",
    customer_code="CUST-1",
    lines=(OrderLine(1, "P-1", Decimal("1"), Decimal("1.00")),),
)


# fmt: off
def test_mock_connector_success():
    connector = MockConnector()
    config = {"mode": "success"}

    result = connector.export(draft_order, config)

    assert result.success is True
# fmt: on


# -- what the examples imply --------------------------------------------------------------

SEED_CONFIG = {
    "api_url": "https://myerp.example.com/api",
    "api_key": "test-key",
    "company_id": "ACME",
}


def test_step_2_makes_the_registry_resolve_my_erp() -> None:
    assert isinstance(ConnectorRegistry.get("MY_ERP"), MyConnector)
    assert "MY_ERP" in ConnectorRegistry.known_types()


def test_the_missing_config_error_is_permanent_and_names_the_fields() -> None:
    with pytest.raises(ConnectorError) as excinfo:
        MyConnector().export(mock_draft_order, {"api_url": "https://example.com"})
    assert excinfo.value.retryable is False  # a ConnectorConfigError: retrying cannot help
    assert "api_key" in excinfo.value.message and "company_id" in excinfo.value.message


def test_my_connector_declares_no_schema_and_its_config_prints_masked() -> None:
    connector = MyConnector()
    assert connector.config_schema is None
    prepared = connector.prepare_config(SEED_CONFIG)
    assert dict(prepared) == SEED_CONFIG
    assert "test-key" not in repr(prepared) and "ACME" not in repr(prepared)


# -- Retry Logic, for a connector written like Step 1 -------------------------------------


class MyConnectorTimingOut(MyConnector):
    """Step 1's connector whose ERP does not answer twice per order, then does."""

    def __init__(self, timeouts: int = 2) -> None:
        super().__init__()
        self.timeouts = timeouts
        self.sent: list[uuid.UUID] = []

    def _send_to_erp(self, payload: Mapping[str, Any], config: Mapping[str, Any]) -> Any:
        self.sent.append(uuid.UUID(str(payload["order_id"]).removeprefix("MY-")))
        if len(self.sent) <= self.timeouts:
            raise TimeoutError(f"{config['api_url']} did not answer within 5 s")
        return super()._send_to_erp(payload, config)


def test_a_seed_style_timeout_is_retried_by_push_order_with_1s_and_2s_delays() -> None:
    from consumer.push_service import PushService
    from domain.records import ConnectionRecord
    from tests.push_log_fakes import FakePushLogWriter
    from tests.fakes import FakeCipher, FakeClock, FakeRegistry, FakeUnitOfWork

    org = uuid.uuid4()
    order = DraftOrder(id=uuid.uuid4(), org_id=org, order_number="SO-RETRY", customer_code="C")
    connector = MyConnectorTimingOut()
    uow = FakeUnitOfWork(known_types=frozenset({"MY_ERP"}))
    cipher = FakeCipher()
    blob = cipher.encrypt_config(SEED_CONFIG, org_id=org, connector_type="MY_ERP")
    with uow:
        uow.connections.add(ConnectionRecord.new(org, "MY_ERP", blob))
        uow.commit()
    clock = FakeClock()
    orchestrator = PushService(
        uow=uow,
        writer=FakePushLogWriter(uow),
        registry=FakeRegistry({"MY_ERP": connector}),
        cipher=cipher,
        sleep=clock.sleep,
        clock=clock,
        monotonic=clock.monotonic,
    )

    result = orchestrator.push_order(org, order, max_retries=3, retry_delay_base=1.0)

    assert (result.status, result.attempt, result.retry_count) == ("SUCCESS", 2, 2)
    assert clock.sleeps == [1.0, 2.0]
    assert connector.sent == [order.id] * 3
    with uow:
        rows = list(uow.push_log.list_for_order(org, order.id))
    assert [(r.attempt, r.status) for r in rows] == [
        (0, "RETRYING"),
        (1, "RETRYING"),
        (2, "SUCCESS"),
    ]
    # Every value of a config without a schema is secret: the echoed api_url is scrubbed.
    assert rows[0].error_message == "MyERP export failed: *** did not answer within 5 s"
    assert result.response_json is not None
    assert result.response_json["connector_metadata"] == {
        "erp_order_id": f"MY-{order.id}",
        "erp_order_number": "SO-RETRY",
    }
