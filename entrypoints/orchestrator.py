"""``PushOrchestrator(db_session)``: the seed's synchronous push, wired to this project's adapters.

The seed builds it from nothing but a SQLAlchemy session::

    from entrypoints.orchestrator import PushOrchestrator

    result = PushOrchestrator(db_session).push_order(test_org.id, draft_order)

The work is :class:`consumer.push_service.PushService`'s; this composition-root
class only picks the collaborators it was not given: a unit of work over
``db_session``, the push-log writer running its statements in ``db_session``,
the connector registry and the cipher keyed from ``ENCRYPTION_MASTER_KEY``.
Every one can be injected instead (``uow`` with ``writer`` replace
``db_session``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from consumer.push_attempt import DEFAULT_LEASE_SECONDS, ConfigDecryptor, ConnectorLookup
from consumer.push_service import PushService
from domain.push_writes import PushLogWriter
from domain.repositories import UnitOfWork
from entrypoints import bootstrap


class PushOrchestrator(PushService):
    """Pushes draft orders to the organisation's ERP, exactly once, with retries."""

    def __init__(
        self,
        db_session: object = None,
        *,
        uow: UnitOfWork | None = None,
        writer: PushLogWriter | None = None,
        registry: ConnectorLookup | None = None,
        cipher: ConfigDecryptor | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        if uow is None and db_session is None:
            raise TypeError("PushOrchestrator needs a db_session or a uow")
        if writer is None and db_session is None:
            raise TypeError("PushOrchestrator built on a uow needs its writer (writer=...)")
        super().__init__(
            uow=uow if uow is not None else bootstrap.unit_of_work_for_session(db_session),
            writer=writer if writer is not None else bootstrap.push_log_writer(db_session),
            registry=registry if registry is not None else bootstrap.default_registry(),
            cipher=cipher if cipher is not None else bootstrap.default_cipher(),
            sleep=sleep,
            clock=clock,
            monotonic=monotonic,
            lease_seconds=lease_seconds,
        )
