"""Fixtures shared by the integration tests.

One migrated scratch database per module; a real Tryton server (``trytond`` with
``sale``) per module that asks for ``tryton_server``, started from a template database
built once and cached on disk (see ``infra/tryton.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from adapters.postgres import migrate
from adapters.postgres.admin import temporary_database
from adapters.postgres.engine import make_engine
from infra.tryton import TrytonServer, ensure_template, start_server, stop_server


@pytest.fixture(scope="module")
def migrated_db_url(database_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database migrated to head, private to the test module, dropped after it."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with temporary_database(database_url, prefix=f"orderflow_t_{module[:20]}") as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="module")
def engine(migrated_db_url: str) -> Iterator[Engine]:
    """An engine on the module's migrated database."""
    eng = make_engine(migrated_db_url)
    yield eng
    eng.dispose()


#: Failed logins are counted within Tryton's session timeout and answered ever more
#: slowly (then with HTTP 429); the tests try wrong passwords on purpose, so keep it short.
TRYTON_SESSION_TIMEOUT_S = 3


@pytest.fixture(scope="session")
def tryton_template() -> str:
    """The activated and seeded template database (built once, cached on disk)."""

    def progress(message: str) -> None:
        print(f"[tryton] {message}", file=sys.stderr, flush=True)

    return str(ensure_template(progress=progress))


@pytest.fixture(scope="module")
def tryton_server(
    tryton_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrytonServer]:
    """A ``trytond`` on 127.0.0.1 on a fresh copy of the template, private to the module."""
    server = start_server(tmp_path_factory.mktemp("tryton"),
                          session_timeout_s=TRYTON_SESSION_TIMEOUT_S)
    try:
        yield server
    finally:
        stop_server(server)
