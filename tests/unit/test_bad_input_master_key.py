"""A missing, short or non-hex ENCRYPTION_MASTER_KEY stops a process at start with ONE line.

Pointed at endpoints where nothing listens: the key must be refused before anything
tries to connect, so these need no services. A few cases run as real processes
(``python -m ...``: exit status and the whole stderr); every bad key runs in process.
The commands that read the database before they need the key are checked on real
PostgreSQL in tests/integration/test_bad_input_master_key_db.py.
"""

from __future__ import annotations

import io
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoints.cli import main as cli_main
from tests.processes import run_python

NOWHERE_DB = "postgresql+psycopg2://nobody@127.0.0.1:9/nothing"
NOWHERE_KAFKA = "127.0.0.1:9"
BAD_KEYS = {
    "missing": (None, "ENCRYPTION_MASTER_KEY is not set"),
    "empty": ("   ", "ENCRYPTION_MASTER_KEY is not set"),
    "short": ("ab" * 16, "ENCRYPTION_MASTER_KEY must be 64 hex characters (32 bytes), got 32"),
    "long": ("ab" * 33, "ENCRYPTION_MASTER_KEY must be 64 hex characters (32 bytes), got 66"),
    "non-hex": ("zz" * 32, "ENCRYPTION_MASTER_KEY is not valid hex"),
}


def run(argv: list[str], key: str | None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {"DATABASE_URL": NOWHERE_DB, "KAFKA_BOOTSTRAP_SERVERS": NOWHERE_KAFKA}
    return run_python(argv, env, key=key, stdin=stdin)


def assert_one_clear_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("argv", "case"),
    [
        (["-m", "entrypoints.cli", "consume"], "missing"),
        (["-m", "entrypoints.cli", "consume"], "non-hex"),
    ],
    ids=["worker", "orderflow-consume"],
)
def test_worker_process_refuses_to_start(argv: list[str], case: str) -> None:
    key, expected = BAD_KEYS[case]
    result = run(argv, key)
    assert_one_clear_line(result, expected)
    assert result.stderr.startswith("error: MasterKeyError: ")


@pytest.fixture
def bad_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[str | None], None]:
    monkeypatch.setenv("DATABASE_URL", NOWHERE_DB)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", NOWHERE_KAFKA)
    monkeypatch.delenv("ENCRYPTION_OLD_KEYS", raising=False)

    def set_key(key: str | None) -> None:
        if key is None:
            monkeypatch.delenv("ENCRYPTION_MASTER_KEY", raising=False)
        else:
            monkeypatch.setenv("ENCRYPTION_MASTER_KEY", key)

    return set_key


def assert_one_line(status: int, err: str, expected: str, prefix: str) -> None:
    assert status == 1
    assert err.startswith(prefix) and err.count("\n") == 1 and expected in err, err


@pytest.mark.parametrize("case", sorted(BAD_KEYS))
def test_worker_refuses_every_bad_key_before_connecting(
    case: str, bad_env: Callable[[str | None], None], capsys: pytest.CaptureFixture[str]
) -> None:
    key, expected = BAD_KEYS[case]
    bad_env(key)
    status = cli_main(["consume"])
    err = capsys.readouterr().err
    assert_one_line(status, err, expected, "error: MasterKeyError: ")
    if key and key.strip():
        assert key not in err  # the bad value is never echoed


@pytest.mark.parametrize("case", sorted(BAD_KEYS))
def test_cli_commands_that_encrypt_refuse_the_key(
    case: str,
    bad_env: Callable[[str | None], None],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    key, expected = BAD_KEYS[case]
    bad_env(key)
    config = tmp_path / "c.json"
    config.write_text('{"mode": "success", "api_key": "never-shown-3c1d"}', encoding="utf-8")
    create = ["connections", "create", "--org", str(uuid.uuid4()), "--type", "MOCK"]
    out = io.StringIO()
    status = cli_main([*create, "--config-file", str(config)], out=out)
    err = capsys.readouterr().err
    assert_one_line(status, err, expected, "orderflow: error: ")
    assert "never-shown-3c1d" not in err + out.getvalue()
    status = cli_main(["keys", "rewrap", "--dry-run"], out=out)
    assert_one_line(status, capsys.readouterr().err, expected, "orderflow: error: ")


def test_cli_process_exits_non_zero_with_one_line() -> None:
    key, expected = BAD_KEYS["short"]
    create = ["-m", "entrypoints.cli", "connections", "create", "--org", str(uuid.uuid4())]
    result = run(
        [*create, "--type", "MOCK", "--config-file", "-"],
        key,
        stdin='{"mode": "success", "api_key": "never-shown-3c1d"}',
    )
    assert_one_clear_line(result, expected)
    assert "never-shown-3c1d" not in result.stderr + result.stdout
