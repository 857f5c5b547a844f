"""A bad ENCRYPTION_MASTER_KEY for the commands that read the database before they need it.

``orders push`` and ``connections test`` must stop with one line and change nothing
(no push-log claim, no ``last_test_at``); the relay never decrypts, so it does not
need the key at all (least privilege: it is not given a secret it has no use for).
"""

from __future__ import annotations

import io
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from entrypoints.cli import EXIT_OK, main
from tests.processes import run_python

GOOD_KEY = os.urandom(32).hex()


def cli(
    env: dict[str, str], *argv: str, key: str | None = GOOD_KEY
) -> subprocess.CompletedProcess[str]:
    return run_python(["-m", "entrypoints.cli", *argv], env, key=key)


@pytest.fixture
def prepared(
    migrated_db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[dict[str, str], uuid.UUID, uuid.UUID]:
    """An organisation with a MOCK connection and an approved order (good key)."""
    monkeypatch.setenv("DATABASE_URL", migrated_db_url)
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", GOOD_KEY)
    org = uuid.uuid4()
    config = tmp_path / "c.json"
    config.write_text('{"mode": "success"}', encoding="utf-8")
    create = ["connections", "create", "--org", str(org), "--type", "MOCK"]
    assert main([*create, "--config-file", str(config)], out=io.StringIO()) == EXIT_OK
    order = tmp_path / "o.json"
    order.write_text('{"order_number": "SO-K1", "customer_code": "C"}', encoding="utf-8")
    out = io.StringIO()
    assert main(["orders", "approve", "--org", str(org), "--file", str(order)], out=out) == 0
    order_id = uuid.UUID(out.getvalue().split('"draft_order_id": "')[1][:36])
    return {"DATABASE_URL": migrated_db_url}, org, order_id


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (None, "ENCRYPTION_MASTER_KEY is not set"),
        ("0" * 10, "ENCRYPTION_MASTER_KEY must be 64 hex characters"),
        ("g" * 64, "ENCRYPTION_MASTER_KEY is not valid hex"),
    ],
    ids=["missing", "short", "non-hex"],
)
def test_commands_reading_the_database_first_stop_cleanly(
    prepared: tuple[dict[str, str], uuid.UUID, uuid.UUID],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key: str | None,
    expected: str,
) -> None:
    _, org, order = prepared
    if key is None:
        monkeypatch.delenv("ENCRYPTION_MASTER_KEY")
    else:
        monkeypatch.setenv("ENCRYPTION_MASTER_KEY", key)
    for argv in (
        ["orders", "push", "--org", str(org), "--order", str(order)],
        ["connections", "test", "--org", str(org)],
    ):
        out = io.StringIO()
        assert main(argv, out=out) == 1
        err = capsys.readouterr().err
        assert err.startswith("orderflow: error: ") and err.count("\n") == 1, err
        assert expected in err
        assert out.getvalue() == ""
    with engine.connect() as conn:
        claims = conn.execute(
            text("SELECT count(*) FROM erp_push_log WHERE draft_order_id = :id"), {"id": order}
        ).scalar_one()
        tested = conn.execute(
            text("SELECT last_test_at FROM erp_connection WHERE org_id = :org"), {"org": org}
        ).scalar_one()
    assert (claims, tested) == (0, None)


def test_relay_does_not_need_the_master_key(
    prepared: tuple[dict[str, str], uuid.UUID, uuid.UUID], kafka_bootstrap_servers: str
) -> None:
    env, _, _ = prepared
    prefix = f"it-nokey-{uuid.uuid4().hex[:8]}"
    relay = ["relay", "--drain", "--topic-prefix", prefix, "--partitions", "1"]
    result = cli({**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers}, *relay, key=None)
    assert result.returncode == 0, result.stderr
