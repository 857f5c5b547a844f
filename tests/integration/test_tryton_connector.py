"""TrytonConnector against a real trytond (sale module) started by the fixtures.

Sales are observed by reading the server's SQLite database directly, not through the
connector or its JSON-RPC client.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from typing import Any

import pytest

from adapters.connectors.tryton import TrytonConnector, TrytonUserError
from domain.errors import ConnectorConfigError, ConnectorRejectedError, ConnectorTransientError
from domain.idempotency import export_key
from domain.model import DraftOrder, OrderLine
from infra._proc import pick_free_port
from infra.tryton import TrytonServer, count_sales


@pytest.fixture
def connector() -> Iterator[TrytonConnector]:
    with TrytonConnector() as instance:
        yield instance


def draft(*lines: tuple[str, str, str], customer: str = "CUST-100") -> DraftOrder:
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=uuid.uuid4(),
        order_number="SO-IT-1",
        customer_code=customer,
        currency="EUR",
        notes="integration test",
        lines=tuple(
            OrderLine(n, code, Decimal(qty), Decimal(price), f"line {n}")
            for n, (code, qty, price) in enumerate(lines, start=1)
        ),
    )


def sale_rows(server: TrytonServer, reference: str) -> list[dict[str, Any]]:
    sql = """
        SELECT s.id, s.state, s.description, p.code AS customer, c.code AS currency,
               pp.code AS product, l.quantity, l.unit_price, l.description AS text
          FROM sale_sale s
          JOIN party_party p ON p.id = s.party
          JOIN currency_currency c ON c.id = s.currency
          JOIN sale_line l ON l.sale = s.id
          JOIN product_product pp ON pp.id = l.product
         WHERE s.reference = ? ORDER BY l.sequence"""
    with closing(sqlite3.connect(f"file:{server.database_file}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql, (reference,))]


def test_export_creates_one_draft_sale_with_the_lines_and_the_export_key(
    tryton_server: TrytonServer, connector: TrytonConnector
) -> None:
    order = draft(("SKU-001", "2", "9.95"), ("SKU-003", "1", "29.85"))
    key = export_key(order.org_id, order.id)
    result = connector.export(order, tryton_server.as_config())
    assert result.success is True
    assert result.connector_metadata["created"] is True
    rows = sale_rows(tryton_server, key)
    # Tryton's SQLite backend stores Numeric values as text blobs (b"9.95").
    assert [
        (r["product"], r["quantity"], Decimal(bytes(r["unit_price"]).decode()), r["text"])
        for r in rows
    ] == [("SKU-001", 2.0, Decimal("9.95"), "line 1"), ("SKU-003", 1.0, Decimal("29.85"), "line 2")]
    assert {(r["state"], r["customer"], r["currency"], r["description"]) for r in rows} == {
        ("draft", "CUST-100", "EUR", "SO-IT-1")
    }
    assert result.storage_key == f"{tryton_server.database}/sale.sale/{rows[0]['id']}"
    assert count_sales(tryton_server, reference=key) == 1


def test_a_repeated_export_finds_the_sale_and_creates_none(
    tryton_server: TrytonServer, connector: TrytonConnector
) -> None:
    order = draft(("SKU-002", "5", "19.90"))
    before = count_sales(tryton_server)
    first = connector.export(order, tryton_server.as_config())
    with TrytonConnector() as restarted:  # a new process would not share the session cache
        again = restarted.export(order, tryton_server.as_config())
    assert again.storage_key == first.storage_key
    assert again.connector_metadata["created"] is False
    assert count_sales(tryton_server) == before + 1


def test_an_unknown_product_code_is_rejected_and_creates_nothing(
    tryton_server: TrytonServer, connector: TrytonConnector
) -> None:
    order = draft(("SKU-001", "1", "9.95"), ("NO-SUCH-SKU", "1", "1.00"))
    with pytest.raises(ConnectorRejectedError, match="NO-SUCH-SKU") as excinfo:
        connector.export(order, tryton_server.as_config())
    assert excinfo.value.retryable is False
    assert count_sales(tryton_server, reference=export_key(order.org_id, order.id)) == 0


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (("NOSALE-1", "1", "1.00"), "Product"),  # not salable: the line's domain fails
        (("SKU-001", "1.5", "9.95"), "digits"),  # a unit product in fractions
    ],
    ids=["not-salable", "fractional-units"],
)
def test_a_tryton_user_error_is_a_permanent_rejection(
    tryton_server: TrytonServer,
    connector: TrytonConnector,
    line: tuple[str, str, str],
    text: str,
) -> None:
    order = draft(line)
    with pytest.raises(TrytonUserError, match=text) as excinfo:
        connector.export(order, tryton_server.as_config())
    error = excinfo.value
    assert isinstance(error, ConnectorRejectedError)
    assert error.retryable is False
    assert error.fault == "UserError"
    assert count_sales(tryton_server, reference=export_key(order.org_id, order.id)) == 0


def test_an_unreachable_server_is_transient(connector: TrytonConnector) -> None:
    config = {
        "url": f"http://127.0.0.1:{pick_free_port(set())}",
        "database": "orderflow",
        "username": "admin",
        "password": "unreachable-Password-1",
        "timeout_s": 2,
    }
    with pytest.raises(ConnectorTransientError) as excinfo:
        connector.export(draft(("SKU-001", "1", "9.95")), config)
    assert excinfo.value.retryable is True
    assert excinfo.value.stage == "reachable"
    result = connector.test_connection(config)
    assert (result.success, result.stage) == (False, "reachable")
    assert result.details["stages_passed"] == ["config"]


def test_connection_passes_every_stage(
    tryton_server: TrytonServer, connector: TrytonConnector
) -> None:
    result = connector.test_connection(tryton_server.as_config())
    assert result.success is True, result.error_message
    assert result.details["stages_passed"] == [
        "config",
        "reachable",
        "version",
        "auth",
        "permission",
    ]
    assert result.details["server_version"].startswith("8.")
    assert result.details["sale_access"]["create"] is True


def test_a_wrong_password_fails_the_connection_test_at_the_login_stage(
    tryton_server: TrytonServer, connector: TrytonConnector
) -> None:
    password = "definitely-Wrong-Password-5"
    result = connector.test_connection(tryton_server.as_config(password=password))
    assert (result.success, result.stage) == (False, "auth")
    assert result.details["stages_passed"] == ["config", "reachable", "version"]
    assert password not in repr(result)
    with pytest.raises(ConnectorConfigError) as excinfo:
        connector.export(
            draft(("SKU-001", "1", "9.95")), tryton_server.as_config(password=password)
        )
    assert excinfo.value.retryable is False


def test_an_unknown_database_fails_at_the_database_stage(
    tryton_server: TrytonServer, connector: TrytonConnector
) -> None:
    result = connector.test_connection(tryton_server.as_config(database="no_such_db"))
    assert (result.success, result.stage) == (False, "database")
