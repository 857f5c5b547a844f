"""Database administration helpers: create and drop whole databases.

Used by tests, benchmarks and demos that want a database of their own on a
shared server (``temporary_database``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, make_url, pool, text

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _checked(name: str) -> str:
    # Database names cannot be bound parameters; only plain identifiers are allowed.
    if not _NAME.match(name):
        raise ValueError(f"Invalid database name: {name!r}")
    return name


def _admin_url(database_url: str) -> str:
    return make_url(database_url).set(database="postgres").render_as_string(hide_password=False)


def create_database(database_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``database_url``; return its URL."""
    engine = create_engine(
        _admin_url(database_url), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{_checked(name)}"'))
    finally:
        engine.dispose()
    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


def drop_database(database_url: str, name: str) -> None:
    """Drop database ``name`` (if it exists), disconnecting its sessions first."""
    engine = create_engine(
        _admin_url(database_url), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)'))
    finally:
        engine.dispose()


@contextmanager
def temporary_database(database_url: str, prefix: str = "orderflow_tmp") -> Iterator[str]:
    """Create a uniquely named empty database, yield its URL and drop it afterwards."""
    name = _checked(f"{prefix}_{uuid.uuid4().hex[:12]}")
    url = create_database(database_url, name)
    try:
        yield url
    finally:
        drop_database(database_url, name)
