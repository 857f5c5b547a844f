"""Fixtures shared by the integration tests: one migrated scratch database per module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from adapters.postgres import migrate
from adapters.postgres.admin import temporary_database
from adapters.postgres.engine import make_engine
from entrypoints.relay_wiring import RelayConfig
from tests.integration._pipeline import RelayProcess


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


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    """Start ``orderflow relay`` processes; every one is killed after the test."""
    started: list[RelayProcess] = []

    def start(config: RelayConfig, *extra: str) -> RelayProcess:
        process = RelayProcess(config, tmp_path / f"relay-{len(started)}.log", *extra)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
