"""infra/tryton.py: the local Tryton a human (or the demo) starts, counts sales in and stops."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.connectors.tryton import TrytonConnector
from domain.model import DraftOrder, OrderLine
from infra import tryton


def test_up_reuse_count_sales_and_down(
    tryton_template: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = tryton.ensure(state_dir=tmp_path)
    try:
        assert tryton.ensure(state_dir=tmp_path).pid == server.pid, "a running server is reused"
        assert tryton.status(state_dir=tmp_path) == server
        assert tryton.count_sales(server) == 0

        org_id = uuid.uuid4()
        order = DraftOrder(
            id=uuid.uuid4(),
            org_id=org_id,
            order_number="SO-INFRA-1",
            customer_code="CUST-101",
            lines=(OrderLine(1, "SKU-002", Decimal(4), Decimal("19.90")),),
        )
        with TrytonConnector() as connector:
            connector.export(order, server.as_config())
        assert tryton.count_sales(server) == 1
        assert tryton.count_sales(server, reference_prefix=f"{org_id}:") == 1
        assert tryton.count_sales(server, reference_prefix=f"{uuid.uuid4()}:") == 0

        assert tryton.main(["sales", "--state-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "CUST-101" in out
        assert "79.60" in out
        assert "1 sale order(s)" in out
    finally:
        assert tryton.stop(state_dir=tmp_path) is True
    assert tryton.status(state_dir=tmp_path) is None
    assert tryton.stop(state_dir=tmp_path) is False
