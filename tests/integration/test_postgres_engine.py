"""``make_engine``'s idle ping against a real PostgreSQL whose backend is terminated.

A pooled connection idle for ``ping_after_idle_s`` is pinged on checkout and
replaced if the server dropped it; one back in use sooner is not pinged (the
ping would be a round trip per approval), so its next statement sees the drop.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from adapters.postgres.engine import make_engine


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(admin: Engine, pid: int) -> None:
    with admin.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    time.sleep(0.2)  # the backend exits asynchronously


@pytest.fixture
def admin(database_url: str) -> Engine:
    return make_engine(database_url)


def test_an_idle_connection_the_server_dropped_is_replaced_on_checkout(
    database_url: str, admin: Engine
) -> None:
    engine = make_engine(database_url, ping_after_idle_s=0.1, pool_size=1)
    try:
        first = _backend_pid(engine)
        _terminate(admin, first)
        assert _backend_pid(engine) != first  # pinged, found dead, replaced: no error
    finally:
        engine.dispose()


def test_a_connection_back_in_use_at_once_is_not_pinged(database_url: str, admin: Engine) -> None:
    engine = make_engine(database_url, ping_after_idle_s=60.0, pool_size=1)
    try:
        first = _backend_pid(engine)
        _terminate(admin, first)
        with pytest.raises(OperationalError):
            _backend_pid(engine)  # not pinged: the statement meets the dropped connection
        assert _backend_pid(engine) != first  # and the pool has replaced it since
    finally:
        engine.dispose()
