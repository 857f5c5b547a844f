"""A missing, short or non-hex ENCRYPTION_MASTER_KEY stops a process at start with ONE line.

Real processes (``python -m ...`` subprocesses), pointed at endpoints where nothing
listens: the key must be refused before anything tries to connect, so these need
no services. The commands that read the database before they need the key are
checked on real PostgreSQL in tests/integration/test_bad_input_master_key_db.py.
"""

from __future__ import annotations

import subprocess

import pytest

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
    [(["-m", "consumer.worker"], case) for case in sorted(BAD_KEYS)]
    + [(["-m", "entrypoints.cli", "consume"], "non-hex")],
    ids=[*sorted(BAD_KEYS), "orderflow-consume"],
)
def test_worker_refuses_to_start(argv: list[str], case: str) -> None:
    key, expected = BAD_KEYS[case]
    result = run(argv, key)
    assert_one_clear_line(result, expected)
    assert result.stderr.startswith("error: MasterKeyError: ")
    if key and key.strip():
        assert key not in result.stderr  # the bad value is never echoed


@pytest.mark.parametrize("case", ["missing", "short", "non-hex"])
def test_cli_commands_that_encrypt_refuse_the_key(case: str) -> None:
    key, expected = BAD_KEYS[case]
    created = run(
        [
            "-m",
            "entrypoints.cli",
            "connections",
            "create",
            "--org",
            "0b6f3c1e-0d1a-4a57-9a51-3f5a0f2f1e01",
            "--type",
            "MOCK",
            "--config-file",
            "-",
        ],
        key,
        stdin='{"mode": "success", "api_key": "never-shown-3c1d"}',
    )
    assert_one_clear_line(created, expected)
    assert created.stderr.startswith("orderflow: error: ")
    assert "never-shown-3c1d" not in created.stderr + created.stdout
    rewrap = run(["-m", "entrypoints.cli", "keys", "rewrap", "--dry-run"], key)
    assert_one_clear_line(rewrap, expected)
