"""SQLAlchemy units of work: one database transaction over every store."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.orm import Session, sessionmaker

from adapters.postgres.approval_sql import SqlApprovalWriter
from adapters.postgres.repositories import (
    OutboxValueEncoder,
    SqlConnectionStore,
    SqlDraftOrderStore,
    SqlOutboxStore,
    SqlPushLogStore,
)
from domain.repositories import UnitOfWork


class _SessionStores(UnitOfWork):
    """Binds the SQL stores to a session and commits or rolls it back."""

    _session: Session | None = None
    _outbox_encoder: OutboxValueEncoder | None = None

    def _bind(self, session: Session) -> None:
        self._session = session
        self.connections = SqlConnectionStore(session)
        self.push_log = SqlPushLogStore(session)
        self.draft_orders = SqlDraftOrderStore(session)
        self.outbox = SqlOutboxStore(session, self._outbox_encoder)
        self.approvals = SqlApprovalWriter(session, self._outbox_encoder)

    @property
    def session(self) -> Session:
        """The session of the current unit of work (only inside ``with``)."""
        if self._session is None:
            raise RuntimeError("The unit of work is not active: use it in a 'with' block")
        return self._session

    def commit(self) -> None:
        """Commit the transaction."""
        self.session.commit()

    def rollback(self) -> None:
        """Roll the transaction back."""
        self.session.rollback()


class SqlAlchemyUnitOfWork(_SessionStores):
    """Opens a new session per ``with`` block and closes it at the end.

    The usual choice for services: ``SqlAlchemyUnitOfWork(session_factory)``.
    ``outbox_encoder`` encodes each outbox event's Kafka value as it is written.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        outbox_encoder: OutboxValueEncoder | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._outbox_encoder = outbox_encoder

    @property
    def database_url(self) -> str | None:
        """The URL the sessions connect to (``None``: the factory has no engine bound)."""
        bind = self._session_factory.kw.get("bind")
        url = getattr(bind, "url", None)
        return None if url is None else str(url.render_as_string(hide_password=False))

    def __enter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("SqlAlchemyUnitOfWork blocks must not be nested")
        self._bind(self._session_factory())
        return super().__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            self.session.close()
            self._session = None


class SessionUnitOfWork(_SessionStores):
    """Wraps a session the caller owns (the seed's ``PushOrchestrator(db_session)``).

    Each ``with`` block is one transaction of that session: ``commit()``
    commits it, leaving the block without committing rolls back whatever the
    session holds uncommitted, including changes the caller made before. The
    session is not closed.
    """

    def __init__(
        self, session: Session, *, outbox_encoder: OutboxValueEncoder | None = None
    ) -> None:
        self._outbox_encoder = outbox_encoder
        self._bind(session)
