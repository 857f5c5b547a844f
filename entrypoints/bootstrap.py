"""Composition root: the one place that picks adapters and wires them together.

Every function takes each collaborator as a keyword argument and builds the
production default only when it is not given (cosmicpython's bootstrap), so
tests, the CLI and the workers share the wiring and swap what they need.
Nothing here connects at import time: engines connect on first use.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.avro.codec import AvroCodec
from adapters.avro.outbox_values import outbox_value_encoder as encoder
from adapters.connectors.registry import ConnectorRegistry
from adapters.crypto.encryption import ConfigCipher
from adapters.crypto.keys import EncryptionError
from adapters.postgres.engine import make_engine as _make_engine
from adapters.postgres.engine import make_session_factory
from adapters.postgres.models import use_registered_connector_types
from adapters.postgres.push_log_sql import PushLogBatchWriter
from adapters.postgres.repositories import OutboxValueEncoder
from adapters.postgres.unit_of_work import SessionUnitOfWork, SqlAlchemyUnitOfWork
from consumer.push_service import ConfigDecryptor, ConnectorLookup, PushService
from domain.model import DraftOrder, check_connector_type
from domain.repositories import UnitOfWork
from entrypoints.dlq import PushAgainFn
from producer.connection_admin import ConnectionAdmin
from producer.push_again import PushAgainOutcome, push_again

DATABASE_URL_ENV = "DATABASE_URL"

# Valid connector types are the registered ones: the ORM model (and the connection
# store through it) asks the registry at every check. Wired on import, like the
# seed's registration "at application startup"; no connection is made.
use_registered_connector_types(ConnectorRegistry.known_types)


def registered_connector_type(value: object) -> str:
    """Return ``value`` if a connector is registered for it (``Invalid connector_type: X``)."""
    return check_connector_type(value, ConnectorRegistry.known_types())


def database_url_from_env() -> str:
    """Return ``$DATABASE_URL`` or raise a clear error."""
    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        raise RuntimeError(f"{DATABASE_URL_ENV} is not set (postgresql+psycopg2://...)")
    return url


def make_engine(database_url: str | None = None) -> Engine:
    """Return an engine for ``database_url`` (default ``$DATABASE_URL``); does not connect."""
    return _make_engine(database_url or database_url_from_env())


def session_factory(
    *, engine: Engine | None = None, database_url: str | None = None
) -> sessionmaker[Session]:
    """Return a session factory over ``engine`` (default: a new engine for ``database_url``)."""
    return make_session_factory(engine if engine is not None else make_engine(database_url))


def sql_unit_of_work(
    *,
    session: Session | None = None,
    session_factory: sessionmaker[Session] | None = None,
    database_url: str | None = None,
) -> UnitOfWork:
    """Return a SQL unit of work.

    Over ``session`` if given (the caller owns it), else a new session per
    ``with`` block from ``session_factory`` (default: one for ``database_url``).
    """
    encoder = outbox_value_encoder()
    if session is not None:
        return SessionUnitOfWork(session, outbox_encoder=encoder)
    if session_factory is None:
        session_factory = make_session_factory(make_engine(database_url))
    return SqlAlchemyUnitOfWork(session_factory, outbox_encoder=encoder)


def unit_of_work_for_session(session: object) -> UnitOfWork:
    """Return a unit of work over a caller-owned SQLAlchemy ``session``.

    Used by ``PushOrchestrator(db_session)``; anything but a ``Session`` is
    refused with a clear ``TypeError``.
    """
    if not isinstance(session, Session):
        raise TypeError(
            f"db_session must be a sqlalchemy.orm.Session, got {type(session).__name__}"
        )
    return SessionUnitOfWork(session, outbox_encoder=outbox_value_encoder())


def push_log_writer(
    session: object = None, *, database_url: str | None = None
) -> PushLogBatchWriter:
    """The push-log writer: in a caller's SQLAlchemy ``session``, else on its own connection.

    Its own connection goes to ``database_url`` (default ``$DATABASE_URL``).
    """
    encoder = outbox_value_encoder()
    if session is not None:
        if not isinstance(session, Session):
            raise TypeError(
                f"db_session must be a sqlalchemy.orm.Session, got {type(session).__name__}"
            )
        return PushLogBatchWriter.on_session(session, encoder=encoder)
    return PushLogBatchWriter(database_url or database_url_from_env(), encoder=encoder)


def outbox_value_encoder(*, validate: bool = True) -> OutboxValueEncoder:
    """Encodes each outbox event's Kafka value as it is written (the relay moves bytes).

    ``validate=False`` skips fastavro's ``validate`` before writing, for writers
    that build their records in code from typed values (the push worker's
    outcomes): the codec still prepares each record and fastavro's writer still
    refuses a value that fits no branch of its field, and the bytes are the same.
    Validation was three quarters of the cost of encoding a PushResult (230 us ->
    66 us).
    """
    return encoder() if validate else encoder(AvroCodec.from_schemas(validate=False))


def default_registry() -> ConnectorLookup:
    """Return the connector registry (built-ins and entry-point plugins)."""
    return ConnectorRegistry


def default_cipher() -> ConfigDecryptor:
    """Return the config cipher keyed from ``ENCRYPTION_MASTER_KEY``.

    Built eagerly so a missing or malformed key stops the process at start-up,
    instead of failing (and permanently marking FAILED) every push.
    """
    return ConfigCipher.from_env()


def build_push_orchestrator(
    session: Session | None = None,
    *,
    uow: UnitOfWork | None = None,
    registry: ConnectorLookup | None = None,
    cipher: ConfigDecryptor | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    database_url: str | None = None,
) -> PushService:
    """Return a ``PushService`` wired to PostgreSQL, the registry and the cipher.

    The unit of work is, in order: ``uow``, one over ``session``, or one
    opening sessions on ``database_url`` (default ``$DATABASE_URL``).
    """
    if uow is None:
        uow = sql_unit_of_work(session=session, database_url=database_url)
    if session is None and database_url is None and isinstance(uow, SqlAlchemyUnitOfWork):
        database_url = uow.database_url  # the writer writes where the unit of work reads
    return PushService(
        uow=uow,
        writer=push_log_writer(session, database_url=database_url),
        registry=registry if registry is not None else default_registry(),
        cipher=cipher if cipher is not None else default_cipher(),
        sleep=sleep,
        clock=clock,
    )


def connection_admin(database_url: str) -> ConnectionAdmin:
    """The connection use cases over ``database_url`` with the registry and the master key."""
    return ConnectionAdmin(
        sql_unit_of_work(database_url=database_url),
        ConnectorRegistry,
        ConfigCipher.from_env,
        cipher_errors=(EncryptionError,),
    )


def push_again_for(database_url: str) -> PushAgainFn:
    """``(org, order id, fallback order) -> PushAgainOutcome`` over ``database_url``."""
    uow = sql_unit_of_work(database_url=database_url)

    def run(org: uuid.UUID, order_id: uuid.UUID, order: DraftOrder) -> PushAgainOutcome:
        return push_again(uow, org, order_id, order=order)

    return run
