"""Engine and session helpers.

Creating an engine does not connect; the pool connects on first use.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker


def make_engine(database_url: str, **engine_kwargs: object) -> Engine:
    """Return an engine for ``database_url`` (``postgresql+psycopg2://...``).

    ``pool_pre_ping`` is on by default so a connection the server dropped
    (restart, idle timeout) is replaced instead of failing the next unit of work.
    """
    engine_kwargs.setdefault("pool_pre_ping", True)
    return create_engine(database_url, **engine_kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to ``engine``.

    ``expire_on_commit=False``: stores hand out immutable records, not ORM
    objects, so there is nothing to refresh after a commit, and callers that
    keep an ORM object (the seed's ``db_session.add(ERPConnection(...))``)
    can still read it without a new round trip.
    """
    return sessionmaker(bind=engine, expire_on_commit=False)
