"""TrytonConnector against an in-memory fake Tryton (the real one: tests/integration)."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import uuid
from decimal import Decimal
from typing import Any

import pytest

from adapters.connectors.tryton import TrytonConnector
from adapters.connectors.tryton.connector import config_errors
from domain.config_schema import ErrorCode
from domain.errors import ConnectorConfigError, ConnectorRejectedError
from domain.idempotency import export_key
from domain.model import DraftOrder, OrderLine

PASSWORD = "fake-tryton-Password-31"
CONFIG = {
    "url": "http://erp.example:8000",
    "database": "db",
    "username": "admin",
    "password": PASSWORD,
}


class FakeResponse(io.BytesIO):
    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


class FakeTryton:
    """Just enough of Tryton's JSON-RPC API for the connector: parties, products, sales."""

    def __init__(self) -> None:
        self.sales: dict[int, dict[str, Any]] = {}
        self.methods: list[str] = []
        self.logins = 0
        self.expire_next_call = False
        self.sneak_in_duplicate = False

    def open(self, request: urllib.request.Request, timeout: float) -> FakeResponse:
        assert isinstance(request.data, bytes)
        payload = json.loads(request.data)
        method, params = payload["method"], payload["params"]
        self.methods.append(method)
        if method == "common.db.login":
            self.logins += 1
            if params[1]["password"] != PASSWORD:
                raise urllib.error.HTTPError(request.full_url, 401, "x", {}, None)  # type: ignore[arg-type]
            return self._reply(payload, [1, "token"])
        if self.expire_next_call:
            self.expire_next_call = False
            raise urllib.error.HTTPError(request.full_url, 401, "x", {}, None)  # type: ignore[arg-type]
        return self._reply(payload, self._answer(method, params))

    @staticmethod
    def _reply(payload: dict[str, Any], result: Any) -> FakeResponse:
        return FakeResponse(json.dumps({"id": payload["id"], "result": result}).encode())

    def _answer(self, method: str, params: list[Any]) -> Any:
        if method == "model.res.user.get_preferences":
            return {"company": 1}
        if method == "common.server.version":
            return "8.0"
        if method == "model.party.party.search_read":
            return [{"id": 10}] if params[0][0][2] == "CUST-1" else []
        if method == "model.currency.currency.search_read":
            return [{"id": 20}] if params[0][0][2] == "EUR" else []
        if method == "model.product.product.search_read":
            known = {"P-1": 30, "P-2": 31}
            return [
                {"id": known[c], "code": c, "sale_uom": 1, "default_uom": 1}
                for c in params[0][0][2]
                if c in known
            ]
        if method == "model.sale.sale.search_read":
            reference = params[0][0][2]
            return [
                {"id": i, "number": None, "state": "draft", "reference": reference}
                for i, s in sorted(self.sales.items())
                if s["reference"] == reference
            ]
        if method == "model.sale.sale.create":
            (values,) = params[0]
            if self.sneak_in_duplicate:  # another worker created it a moment earlier
                self.sneak_in_duplicate = False
                self.sales[len(self.sales) + 1] = dict(values)
            new_id = len(self.sales) + 1
            self.sales[new_id] = values
            return [new_id]
        if method == "model.sale.sale.delete":
            for sale_id in params[0]:
                del self.sales[sale_id]
            return None
        if method == "common.db.logout":
            return None
        raise AssertionError(f"unexpected {method}")


@pytest.fixture
def erp() -> FakeTryton:
    return FakeTryton()


@pytest.fixture
def connector(erp: FakeTryton) -> TrytonConnector:
    return TrytonConnector(opener=erp.open)


def order(*codes: str, customer: str = "CUST-1", currency: str = "EUR") -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=uuid.uuid4(),
        order_number="SO-9",
        customer_code=customer,
        currency=currency,
        notes="note",
        lines=tuple(
            OrderLine(n, code, Decimal(n), Decimal("1.50"), f"line {n}")
            for n, code in enumerate(codes or ("P-1", "P-2"), start=1)
        ),
    )


def test_the_config_schema_marks_the_password_secret() -> None:
    schema = TrytonConnector.config_schema
    assert schema.secret_names == frozenset({"password"})
    assert schema.required_names == ("url", "database", "username", "password")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://erp", "http"),
        ("http://user:pw@erp", "credentials"),
        ("http://erp/?x=1", "query"),
    ],
)
def test_urls_are_checked_without_echoing_them(url: str, message: str) -> None:
    errors = config_errors({**CONFIG, "url": url})
    assert [(e.path, e.code) for e in errors] == [("url", ErrorCode.INVALID)]
    assert message in errors[0].message
    assert url not in str(errors[0])


def test_export_creates_a_draft_sale_with_the_export_key_as_reference(
    connector: TrytonConnector, erp: FakeTryton
) -> None:
    draft = order()
    result = connector.export(draft, CONFIG)
    ((sale_id, sale),) = erp.sales.items()
    assert sale["reference"] == export_key(draft.org_id, draft.id)
    assert (sale["party"], sale["currency"], sale["description"]) == (10, 20, "SO-9")
    ((action, lines),) = sale["lines"]
    assert action == "create"
    assert [(line["product"], line["quantity"]) for line in lines] == [(30, 1.0), (31, 2.0)]
    assert lines[0]["unit_price"] == {"__class__": "Decimal", "decimal": "1.50"}
    assert result.storage_key == f"db/sale.sale/{sale_id}"
    assert result.connector_metadata["created"] is True


def test_a_repeated_export_finds_the_sale_and_creates_none(
    connector: TrytonConnector, erp: FakeTryton
) -> None:
    draft = order()
    first = connector.export(draft, CONFIG)
    second = connector.export(draft, CONFIG)
    assert len(erp.sales) == 1
    assert first.storage_key == second.storage_key
    assert second.connector_metadata["created"] is False
    assert erp.methods.count("model.sale.sale.create") == 1
    assert erp.logins == 1, "the session is reused"


def test_a_racing_duplicate_is_deleted_so_one_sale_remains(
    connector: TrytonConnector, erp: FakeTryton
) -> None:
    erp.sneak_in_duplicate = True
    result = connector.export(order(), CONFIG)
    assert list(erp.sales) == [1]
    assert result.storage_key == "db/sale.sale/1"
    assert "model.sale.sale.delete" in erp.methods


def test_an_expired_session_is_renewed_once(connector: TrytonConnector, erp: FakeTryton) -> None:
    connector.export(order(), CONFIG)
    erp.expire_next_call = True
    connector.export(order(), CONFIG)
    assert erp.logins == 2
    assert len(erp.sales) == 2


@pytest.mark.parametrize(
    ("draft", "text"),
    [
        (order("P-1", "NOPE"), "no product with code 'NOPE'"),
        (order(customer="CUST-404"), "no customer party with code 'CUST-404'"),
        (order(currency="XXX"), "no currency 'XXX'"),
    ],
    ids=["product", "customer", "currency"],
)
def test_unknown_codes_are_rejected_permanently(
    connector: TrytonConnector, erp: FakeTryton, draft: DraftOrder, text: str
) -> None:
    with pytest.raises(ConnectorRejectedError, match=text) as excinfo:
        connector.export(draft, CONFIG)
    assert excinfo.value.retryable is False
    assert erp.sales == {}


def test_an_order_without_lines_is_rejected_before_calling_tryton(
    connector: TrytonConnector, erp: FakeTryton
) -> None:
    draft = DraftOrder(
        id=uuid.uuid4(), org_id=uuid.uuid4(), order_number="SO-0", customer_code="CUST-1"
    )
    with pytest.raises(ConnectorRejectedError) as excinfo:
        connector.export(draft, CONFIG)
    assert excinfo.value.stage == "document"
    assert erp.methods == []


def test_a_wrong_password_is_a_permanent_config_error(connector: TrytonConnector) -> None:
    with pytest.raises(ConnectorConfigError) as excinfo:
        connector.export(order(), {**CONFIG, "password": "wrong-Password-0000"})
    assert excinfo.value.stage == "auth"
    assert excinfo.value.retryable is False


def test_connection_reports_every_stage_it_passed(connector: TrytonConnector) -> None:
    def no_access(request: urllib.request.Request, timeout: float) -> FakeResponse:
        payload = json.loads(request.data)  # type: ignore[arg-type]
        if payload["method"] == "model.ir.model.access.get_access":
            result = {"sale.sale": {"read": True, "create": False}}
            return FakeResponse(json.dumps({"id": payload["id"], "result": result}).encode())
        return FakeTryton().open(request, timeout)

    result = TrytonConnector(opener=no_access).test_connection(CONFIG)
    assert (result.success, result.stage) == (False, "permission")
    assert result.details["stages_passed"] == ["config", "reachable", "version", "auth"]
    assert PASSWORD not in repr(result)


def test_pyproject_declares_the_entry_point_of_the_tryton_connector() -> None:
    """What `pip install` turns into the `orderflow.connectors` entry point TRYTON."""
    import tomllib
    from importlib.metadata import EntryPoint
    from pathlib import Path

    from adapters.connectors.registry import ENTRY_POINT_GROUP

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"]
    value = declared[ENTRY_POINT_GROUP]["TRYTON"]
    loaded = EntryPoint("TRYTON", value, ENTRY_POINT_GROUP).load()
    assert loaded is TrytonConnector
    assert loaded.connector_type == "TRYTON"


def test_a_server_text_echoing_the_password_is_scrubbed_and_keeps_its_class() -> None:
    from adapters.connectors.tryton import TrytonUserError

    error = TrytonUserError(f"refused {PASSWORD}!", stage="export", fault="UserWarning")
    clean = TrytonConnector().sanitised_error(error, CONFIG)
    assert type(clean) is TrytonUserError
    assert (clean.stage, clean.fault, clean.retryable) == ("export", "UserWarning", False)
    assert clean.message == str(clean) == "refused ***!"
    assert PASSWORD not in repr(clean)
