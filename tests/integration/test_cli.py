"""The ``orderflow`` CLI against a real PostgreSQL: results, masking and one-line errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.postgres.admin import temporary_database
from entrypoints.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main

MARKER = "cli-marker-secret-7f3a9"


@pytest.fixture(scope="module")
def cli_database(database_url: str) -> Iterator[str]:
    with temporary_database(database_url, prefix="orderflow_t_cli") as url:
        yield url


@pytest.fixture
def cli_env(cli_database: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    key = os.urandom(32).hex()
    monkeypatch.setenv("DATABASE_URL", cli_database)
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", key)
    return {"DATABASE_URL": cli_database, "ENCRYPTION_MASTER_KEY": key}


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def write_json(path: Path, value: object) -> str:
    path.write_text(json.dumps(value), encoding="utf-8")
    return str(path)


def test_full_flow_create_approve_push_and_log(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = str(uuid.uuid4())
    assert run("db", "upgrade")[0] == EXIT_OK
    config = write_json(tmp_path / "c.json", {"mode": "success", "api_key": MARKER})
    status, created = run(
        "connections", "create", "--org", org, "--type", "MOCK", "--config-file", config
    )
    assert status == EXIT_OK
    assert json.loads(created)["config"] == {"mode": "success", "api_key": "***"}

    status, listed = run("connections", "list", "--org", org)
    assert status == EXIT_OK
    assert [c["connector_type"] for c in json.loads(listed)] == ["MOCK"]

    status, tested = run("connections", "test", "--org", org)
    assert status == EXIT_OK and json.loads(tested)["success"] is True

    order = write_json(
        tmp_path / "o.json",
        {
            "order_number": "PO-CLI-1",
            "customer_code": "C1",
            "lines": [{"line_no": 1, "product_code": "SKU", "quantity": "2", "unit_price": "3.50"}],
        },
    )
    status, approved = run("orders", "approve", "--org", org, "--file", order)
    assert status == EXIT_OK
    order_id = json.loads(approved)["draft_order_id"]

    status, pushed = run("orders", "push", "--org", org, "--order", order_id)
    assert status == EXIT_OK
    assert json.loads(pushed)["status"] == "SUCCESS"

    status, log = run("push-log", "--org", org, "--order", order_id)
    entries = json.loads(log)
    assert status == EXIT_OK and [e["status"] for e in entries] == ["SUCCESS"]

    captured = capsys.readouterr()
    everything = created + listed + tested + approved + pushed + log + captured.out + captured.err
    assert MARKER not in everything


def test_a_failed_synchronous_push_says_how_to_push_it_again(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = str(uuid.uuid4())
    assert run("db", "upgrade")[0] == EXIT_OK
    config = write_json(tmp_path / "c.json", {"mode": "fail"})
    created = run("connections", "create", "--org", org, "--type", "MOCK", "--config-file", config)
    assert created[0] == EXIT_OK
    order = write_json(
        tmp_path / "o.json",
        {
            "order_number": "PO-CLI-FAIL",
            "customer_code": "C1",
            "lines": [{"line_no": 1, "product_code": "SKU", "quantity": "1", "unit_price": "1"}],
        },
    )
    approved = run("orders", "approve", "--org", org, "--file", order)
    order_id = json.loads(approved[1])["draft_order_id"]
    capsys.readouterr()

    status, pushed = run("orders", "push", "--org", org, "--order", order_id)

    assert status == EXIT_FAILED
    assert json.loads(pushed)["status"] == "FAILED"
    err = capsys.readouterr().err
    assert f"orderflow orders retry --org {org} --order {order_id}" in err


def test_invalid_config_lists_every_error_without_values(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_json(tmp_path / "c.json", {"mode": MARKER, "latency_ms": "slow", "typo": 1})
    status, _ = run(
        "connections",
        "create",
        "--org",
        str(uuid.uuid4()),
        "--type",
        "MOCK",
        "--config-file",
        config,
    )
    err = capsys.readouterr().err
    assert status == EXIT_FAILED
    assert err.count("\n") == 1
    assert "mode:" in err and "latency_ms:" in err and "typo:" in err
    assert MARKER not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["connections", "create", "--org", "ORG", "--type", "NOPE", "--config-file", "CFG"],
            "Invalid connector_type: NOPE",
        ),
        (["connections", "test", "--org", "ORG"], "No active ERP connection for organisation"),
        (["orders", "approve", "--org", "ORG", "--file", "MISSING"], "cannot read order file"),
        (["orders", "approve", "--org", "ORG", "--file", "BADJSON"], "order is not valid JSON"),
        (
            ["orders", "approve", "--org", "ORG", "--file", "NOFIELD"],
            "Invalid draft order: order_number: required",
        ),
        (["orders", "push", "--org", "ORG", "--order", "ORG"], "no draft order"),
        (["orders", "approve", "--org", "ORG", "--file", "NONUTF8"], "is not UTF-8"),
        (
            ["orders", "approve", "--org", "ORG", "--file", "NUL"],
            "cannot be approved: notes contains a NUL character",
        ),
        (
            ["orders", "approve", "--org", "ORG", "--file", "OVERFLOW"],
            "cannot be approved: the order total cannot be computed",
        ),
        (
            ["orders", "approve", "--org", "ORG", "--file", "NAN"],
            "Invalid draft order: lines[0].quantity: must be a finite decimal number",
        ),
    ],
)
def test_bad_input_gives_one_clear_line(
    cli_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: str,
) -> None:
    run("db", "upgrade")
    files = {
        "CFG": write_json(tmp_path / "c.json", {"mode": "success"}),
        "MISSING": str(tmp_path / "absent.json"),
        "NOFIELD": write_json(tmp_path / "n.json", {"customer_code": "C"}),
        "ORG": str(uuid.uuid4()),
    }
    order = {"order_number": f"SO-{uuid.uuid4().hex[:6]}", "customer_code": "C"}
    line = {"line_no": 1, "product_code": "P", "quantity": "1", "unit_price": "1"}
    files["NUL"] = write_json(tmp_path / "nul.json", {**order, "notes": "a\u0000b"})
    files["OVERFLOW"] = write_json(
        tmp_path / "big.json",
        {**order, "lines": [{**line, "quantity": "9E+999999", "unit_price": "9E+999999"}]},
    )
    nan_line = {**line, "quantity": "NaN"}
    files["NAN"] = write_json(tmp_path / "nan.json", {**order, "lines": [nan_line]})
    (tmp_path / "latin1.json").write_bytes(b'{"order_number": "S\xf6-1", "customer_code": "C"}')
    files["NONUTF8"] = str(tmp_path / "latin1.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    files["BADJSON"] = str(tmp_path / "bad.json")
    status, _ = run(*[files.get(a, a) for a in argv])
    err = capsys.readouterr().err
    # Bad input, not bad usage: the command line itself is right.
    assert status == EXIT_FAILED
    assert err.startswith("orderflow: error: ") and err.count("\n") == 1
    assert expected in err


def test_console_script_reports_missing_settings_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "db", "upgrade"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == EXIT_USAGE
    assert (
        result.stderr.strip().splitlines() == [result.stderr.strip()]
        and "DATABASE_URL is not set" in result.stderr
    )


def test_missing_master_key_is_a_clear_error(
    cli_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("ENCRYPTION_MASTER_KEY")
    config = write_json(tmp_path / "c.json", {"mode": "success"})
    status, _ = run(
        "connections",
        "create",
        "--org",
        str(uuid.uuid4()),
        "--type",
        "MOCK",
        "--config-file",
        config,
    )
    assert status == EXIT_FAILED
    assert "ENCRYPTION_MASTER_KEY is not set" in capsys.readouterr().err


@pytest.mark.parametrize("process", ["relay", "consume"])
def test_process_commands_show_their_own_help(
    process: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([process, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: orderflow {process} ")  # click's usage line
    assert "--topic-prefix" in out


def test_relay_command_drains_approved_orders_to_kafka(
    cli_env: dict[str, str], kafka_bootstrap_servers: str, tmp_path: Path
) -> None:
    from sqlalchemy import create_engine, text

    org = str(uuid.uuid4())
    run("db", "upgrade")
    order = write_json(
        tmp_path / "o.json",
        {"order_number": f"PO-{uuid.uuid4().hex[:8]}", "customer_code": "C1", "lines": []},
    )
    assert run("orders", "approve", "--org", org, "--file", order)[0] == EXIT_OK
    prefix = f"clitest{uuid.uuid4().hex[:8]}"
    status = main(
        [
            "relay",
            "--drain",
            "--topic-prefix",
            prefix,
            "--bootstrap-servers",
            kafka_bootstrap_servers,
            "--database-url",
            cli_env["DATABASE_URL"],
        ]
    )
    assert status == EXIT_OK
    engine = create_engine(cli_env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            unpublished = conn.execute(text("SELECT count(*) FROM outbox_event")).scalar_one()
    finally:
        engine.dispose()
    assert unpublished == 0
