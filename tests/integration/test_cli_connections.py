"""``orderflow connections create/list`` on PostgreSQL: registered types, schema-less configs.

* Valid types are the registered ones: every other type is refused with the seed's
  ``Invalid connector_type: X``, in one format; a type registered at start-up
  (``ConnectorRegistry.register``) is accepted.
* A connector that declares no ``config_schema`` (the seed's ``MyConnector``) takes any
  JSON object; ``create`` and ``list`` mask every value of it and say why.
* ``list`` shows each config masked; a row it cannot decrypt is shown without its
  config and with the reason, and the listing goes on.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from adapters.connectors.registry import ConnectorRegistry
from adapters.postgres.admin import temporary_database
from adapters.postgres.engine import make_engine
from entrypoints.cli import EXIT_FAILED, EXIT_OK, main
from tests.seed_style import SEED_STYLE_TYPE, SeedStyleConnector

pytestmark = pytest.mark.integration

SECRET = "cli-connections-secret-5d1e"


@pytest.fixture(scope="module")
def cli_database(database_url: str) -> Iterator[str]:
    with temporary_database(database_url, prefix="orderflow_t_cliconn") as url:
        yield url


@pytest.fixture
def cli_env(cli_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", cli_database)
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", os.urandom(32).hex())
    monkeypatch.delenv("ENCRYPTION_OLD_KEYS", raising=False)
    assert main(["db", "upgrade"], out=io.StringIO()) == EXIT_OK
    with ConnectorRegistry.isolated():
        ConnectorRegistry.register(SEED_STYLE_TYPE, SeedStyleConnector)
        yield cli_database


def run(*argv: str) -> tuple[int, Any]:
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, (json.loads(out.getvalue()) if out.getvalue() else None)


def create(tmp_path: Path, org: str, ctype: str, config: Any) -> tuple[int, Any]:
    path = tmp_path / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return run("connections", "create", "--org", org, "--type", ctype, "--config-file", str(path))


@pytest.mark.parametrize(
    ("ctype", "shown"),
    [
        ("SAP", "SAP"),
        ("EDI", "EDI"),
        ("NOT_INSTALLED", "NOT_INSTALLED"),
        ("mock", "mock"),
        ("my erp!", "my erp!"),
    ],
)
def test_a_type_no_connector_is_registered_for_is_refused_in_the_seed_format(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], ctype: str, shown: str
) -> None:
    status, out = create(tmp_path, str(uuid.uuid4()), ctype, {"mode": "success"})
    assert (status, out) == (EXIT_FAILED, None)
    assert capsys.readouterr().err == f"orderflow: error: Invalid connector_type: {shown}\n"
    assert run("connections", "list")[1] == []


def test_a_type_registered_at_start_up_is_accepted(cli_env: str, tmp_path: Path) -> None:
    status, out = create(tmp_path, str(uuid.uuid4()), SEED_STYLE_TYPE, {"api_url": "u"})
    assert status == EXIT_OK
    assert out["connector_type"] == SEED_STYLE_TYPE


def test_a_connector_without_a_schema_takes_any_object_and_masks_every_value(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = str(uuid.uuid4())
    config = {"api_url": "https://erp.example.com", "api_key": SECRET, "nested": {"k": SECRET}}
    status, created = create(tmp_path, org, SEED_STYLE_TYPE, config)
    assert status == EXIT_OK
    note = f"{SEED_STYLE_TYPE} declares no config_schema: every value is masked"
    assert created["config"] == {"api_url": "***", "api_key": "***", "nested": "***"}
    assert created["config_note"] == note

    status, listed = run("connections", "list", "--org", org)
    assert status == EXIT_OK
    assert [(c["id"], c["config"], c["config_note"]) for c in listed] == [
        (created["id"], created["config"], note)
    ]
    assert SECRET not in json.dumps([created, listed]) + capsys.readouterr().err


@pytest.mark.parametrize("config", [[1, 2], "a string", 42, None])
def test_a_config_that_is_not_an_object_is_refused_even_without_a_schema(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], config: Any
) -> None:
    status, _ = create(tmp_path, str(uuid.uuid4()), SEED_STYLE_TYPE, config)
    assert status == EXIT_FAILED
    err = capsys.readouterr().err
    assert "config must be a JSON object" in err and err.count("\n") == 1


def test_list_shows_each_config_masked_and_says_why_one_cannot_be_shown(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = str(uuid.uuid4())
    status, mock = create(tmp_path, org, "MOCK", {"mode": "success", "api_key": SECRET})
    assert status == EXIT_OK
    other = str(uuid.uuid4())
    engine = make_engine(cli_env)
    try:
        with engine.begin() as conn:  # a blob no key here decrypts, and an uninstalled type
            conn.execute(
                text(
                    "INSERT INTO erp_connection (org_id, connector_type, config_encrypted)"
                    " VALUES (:org, 'MOCK', :blob)"
                ),
                {"org": other, "blob": os.urandom(60)},
            )
    finally:
        engine.dispose()

    status, listed = run("connections", "list")
    assert status == EXIT_OK
    by_org = {c["org_id"]: c for c in listed}
    assert by_org[org]["config"] == {"mode": "success", "api_key": "***"}
    assert "config_note" not in by_org[org]
    assert by_org[other]["config"] is None
    assert by_org[other]["config_note"].startswith("config not shown: cannot decrypt it")
    assert mock["id"] == by_org[org]["id"]
    assert SECRET not in json.dumps(listed) + capsys.readouterr().err


def test_list_without_a_master_key_lists_the_connections_without_configs(
    cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = str(uuid.uuid4())
    assert create(tmp_path, org, "MOCK", {"mode": "success"})[0] == EXIT_OK
    monkeypatch.delenv("ENCRYPTION_MASTER_KEY")
    status, listed = run("connections", "list", "--org", org)
    assert status == EXIT_OK
    [row] = listed
    assert row["config"] is None
    assert row["config_note"].startswith("config not shown: ")
    assert "ENCRYPTION_MASTER_KEY" in row["config_note"]
