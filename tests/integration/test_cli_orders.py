"""``orderflow orders approve --file`` on a real PostgreSQL: the documented, strict order file.

The example of the README and ``--help`` (examples/order.json) is approved and
pushed as written; every problem of a bad file is listed at once with exit
status 1 and nothing is written; exit status 2 is for the command line only.
Also: every command's error paths follow that rule, and the long-running
processes' help names the ``orderflow`` command.
"""

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
from sqlalchemy import create_engine, text

from adapters.postgres.admin import temporary_database
from entrypoints.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ORDER_FILE_HELP, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "order.json"


@pytest.fixture(scope="module")
def orders_database(database_url: str) -> Iterator[str]:
    with temporary_database(database_url, prefix="orderflow_t_cli_orders") as url:
        previous = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = url
        try:
            assert main(["db", "upgrade"], out=io.StringIO()) == EXIT_OK
        finally:
            if previous is None:
                os.environ.pop("DATABASE_URL")
            else:
                os.environ["DATABASE_URL"] = previous
        yield url


@pytest.fixture
def cli_env(orders_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", orders_database)
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", os.urandom(32).hex())
    return orders_database


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def write_json(path: Path, value: object) -> str:
    path.write_text(json.dumps(value), encoding="utf-8")
    return str(path)


def rows(url: str, org: str) -> tuple[int, int]:
    """(draft orders, outbox events) of ``org``."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            orders = conn.execute(
                text("SELECT count(*) FROM draft_order WHERE org_id = :org"), {"org": org}
            ).scalar_one()
            events = conn.execute(
                text("SELECT count(*) FROM outbox_event WHERE org_id = :org"), {"org": org}
            ).scalar_one()
    finally:
        engine.dispose()
    return orders, events


def example() -> dict[str, object]:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_example_file_is_approved_under_its_id_and_pushed(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = str(uuid.uuid4())
    config = write_json(tmp_path / "c.json", {"mode": "success"})
    assert run("connections", "create", "--org", org, "--type", "MOCK", "--config-file", config)[
        0
    ] == (EXIT_OK)

    status, approved = run("orders", "approve", "--org", org, "--file", str(EXAMPLE))
    assert status == EXIT_OK, capsys.readouterr().err
    assert json.loads(approved)["draft_order_id"] == example()["id"]  # the given id is used
    assert rows(cli_env, org) == (1, 1)

    status, pushed = run("orders", "push", "--org", org, "--order", str(example()["id"]))
    assert status == EXIT_OK
    assert json.loads(pushed)["status"] == "SUCCESS"
    status, log = run("push-log", "--org", org, "--order", str(example()["id"]))
    (entry,) = json.loads(log)
    request = entry["response"]
    assert entry["status"] == "SUCCESS" and request["export_id"] == example()["id"]

    # Approving it again is refused (exit 1) and writes nothing more.
    status, _ = run("orders", "approve", "--org", org, "--file", str(EXAMPLE))
    assert status == EXIT_FAILED
    assert "already approved" in capsys.readouterr().err
    assert rows(cli_env, org) == (1, 1)


def test_the_example_file_holds_every_documented_field() -> None:
    fields = set(example())
    line_fields = {key for line in example()["lines"] for key in line}  # type: ignore[attr-defined]
    documented = {line.split()[0] for line in ORDER_FILE_HELP.splitlines() if line[:2] == "  "}
    assert fields | line_fields <= documented
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "examples/order.json" in readme
    for name in documented:
        assert f"`{name}`" in readme, name


def test_a_file_without_id_gets_a_new_one(cli_env: str, tmp_path: Path) -> None:
    org = str(uuid.uuid4())
    data = {k: v for k, v in example().items() if k != "id"}
    status, approved = run(
        "orders", "approve", "--org", org, "--file", write_json(tmp_path / "o.json", data)
    )
    assert status == EXIT_OK
    assert json.loads(approved)["draft_order_id"] != example()["id"]
    assert rows(cli_env, org) == (1, 1)


BAD_FILES: dict[str, tuple[object, list[str]]] = {
    "unknown key": (
        {**example(), "draft_order_id": str(uuid.uuid4())},
        ["draft_order_id: unknown field"],
    ),
    "unknown key in a line": (
        {**example(), "lines": [{**example()["lines"][0], "qty": "1"}]},  # type: ignore[index]
        ["lines[0].qty: unknown field"],
    ),
    "missing fields": (
        {"lines": [{"line_no": 1}, {"product_code": "P", "quantity": "1", "unit_price": "1"}]},
        [
            "order_number: required",
            "customer_code: required",
            "lines[0].product_code: required",
            "lines[0].quantity: required",
            "lines[0].unit_price: required",
            "lines[1].line_no: required",
        ],
    ),
    "float amount": (
        {**example(), "total": None, "lines": [{**example()["lines"][0], "quantity": 2.5}]},  # type: ignore[index]
        ['lines[0].quantity: must be a decimal number as text (e.g. "2.50"), not a float'],
    ),
    "wrong total": ({**example(), "total": "1"}, ["total: does not equal the sum"]),
    "bad id": ({**example(), "id": "SO-1001"}, ["id: not a UUID"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_lists_every_problem_exits_1_and_writes_nothing(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    data, expected = BAD_FILES[case]
    org = str(uuid.uuid4())
    status, out = run(
        "orders", "approve", "--org", org, "--file", write_json(tmp_path / "o.json", data)
    )
    err = capsys.readouterr().err
    assert status == EXIT_FAILED and out == ""
    assert err.startswith("orderflow: error: Invalid draft order: ") and err.count("\n") == 1
    problems = err.removeprefix("orderflow: error: Invalid draft order: ").strip().split("; ")
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start)
    assert rows(cli_env, org) == (0, 0)


def test_an_org_id_in_the_file_must_match_org(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org, other = str(uuid.uuid4()), str(uuid.uuid4())
    path = write_json(tmp_path / "o.json", {**example(), "id": str(uuid.uuid4()), "org_id": other})
    status, _ = run("orders", "approve", "--org", org, "--file", path)
    assert status == EXIT_FAILED
    assert f"org_id: belongs to organisation {other}, not {org}" in capsys.readouterr().err
    assert rows(cli_env, org) == (0, 0) and rows(cli_env, other) == (0, 0)

    same = write_json(tmp_path / "s.json", {**example(), "id": str(uuid.uuid4()), "org_id": org})
    assert run("orders", "approve", "--org", org, "--file", same)[0] == EXIT_OK


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '{"order_number": "A", "order_number": "B", "customer_code": "C"}',
            "key 'order_number' twice",
        ),
        ("[1, 2]", "order must be a JSON object, not a JSON array"),
        ("{not json", "order is not valid JSON (line 1, column 2)"),
    ],
)
def test_files_that_are_no_order_object_exit_1(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    org = str(uuid.uuid4())
    path = tmp_path / "o.json"
    path.write_text(content, encoding="utf-8")
    status, _ = run("orders", "approve", "--org", org, "--file", str(path))
    err = capsys.readouterr().err
    assert status == EXIT_FAILED and expected in err and err.count("\n") == 1
    assert rows(cli_env, org) == (0, 0)


@pytest.mark.parametrize(
    "argv",
    [
        ["orders", "approve", "--file", str(EXAMPLE)],  # --org missing
        ["orders", "approve", "--org", "not-a-uuid", "--file", str(EXAMPLE)],
        ["orders", "approve", "--org", str(uuid.UUID(int=1))],  # --file missing
        ["orders", "approve", "--org", str(uuid.UUID(int=1)), "--file", "x", "--bogus"],
        [
            "orders",
            "push",
            "--org",
            str(uuid.UUID(int=1)),
            "--order",
            str(uuid.UUID(int=2)),
            "--max-retries",
            "-1",
        ],
        [
            "orders",
            "push",
            "--org",
            str(uuid.UUID(int=1)),
            "--order",
            str(uuid.UUID(int=2)),
            "--retry-delay-base",
            "nan",
        ],
        ["keys", "rewrap", "--batch-size", "0"],
        ["outbox", "prune", "--older-than", "7 days"],
        ["nonsense"],
    ],
)
def test_bad_command_lines_exit_2(
    cli_env: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv, out=io.StringIO())
    assert exc.value.code == EXIT_USAGE
    assert "usage: orderflow" in capsys.readouterr().err


def test_bad_input_of_other_commands_exits_1_usage_errors_exit_2(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = str(uuid.uuid4())
    failed = [
        ["db", "upgrade", "--revision", "no-such-revision"],
        [
            "connections",
            "create",
            "--org",
            org,
            "--type",
            "MOCK",
            "--config-file",
            str(tmp_path / "absent.json"),
        ],
        ["connections", "test", "--org", org],
        ["connections", "disable", "--id", str(uuid.uuid4())],
        ["orders", "push", "--org", org, "--order", str(uuid.uuid4())],
    ]
    for argv in failed:
        status, _ = run(*argv)
        err = capsys.readouterr().err
        assert status == EXIT_FAILED, argv
        assert err.startswith("orderflow: error: ") and err.count("\n") == 1, err
    usage = [
        ["dlq", "replay", "--bootstrap-servers", "127.0.0.1:1"],  # nothing selected
        ["dlq", "replay", "--all", "--offset", "0:0", "--bootstrap-servers", "127.0.0.1:1"],
        ["dlq", "replay", "--offset", "x", "--bootstrap-servers", "127.0.0.1:1"],
        ["dlq", "list", "--topic-prefix", "bad prefix!", "--bootstrap-servers", "127.0.0.1:1"],
    ]
    for argv in usage:
        status, _ = run(*argv)
        err = capsys.readouterr().err
        assert status == EXIT_USAGE, argv
        assert err.startswith("orderflow: error: ") and err.count("\n") == 1, err


@pytest.mark.parametrize("process", ["relay", "consume"])
def test_process_help_names_the_orderflow_command(process: str) -> None:
    def usage(*argv: str) -> str:
        result = subprocess.run(
            [sys.executable, *argv, "--help"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert usage("-m", "entrypoints.cli", process).startswith(f"Usage: orderflow {process} ")
