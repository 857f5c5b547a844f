"""Command-line options shared by the long-running processes (relay and push worker).

Both need the same connection settings; :func:`service_options` declares them
once, as click options, so ``orderflow relay`` and ``orderflow consume`` have the
same flags, defaults and error texts. The database and Kafka defaults come from
the environment through ``entrypoints.settings.Settings``, the one reader of it,
read when the command runs (not when this module is imported).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from entrypoints.cli_support import POSITIVE_INT
from entrypoints.settings import Settings

_R = TypeVar("_R")


@dataclass(frozen=True)
class ServiceOptions:
    """The shared flags of a process, resolved: where it connects and how it logs."""

    database_url: str
    bootstrap_servers: str
    topic_prefix: str
    partitions: int
    ensure_topics: bool
    #: An upper-case level name of ``logging`` (``INFO``).
    log_level: str


def _log_level(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    level = value.upper()
    if level not in logging.getLevelNamesMapping():
        raise click.BadParameter(
            f"not a logging level: {value!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
        )
    return level


# In the order ``--help`` lists them.
_OPTIONS = (
    click.option(
        "--database-url",
        default=None,
        help="SQLAlchemy URL of the database (default: $DATABASE_URL)",
    ),
    click.option(
        "--bootstrap-servers",
        default=None,
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS)",
    ),
    click.option("--topic-prefix", default="orderflow", help="topic prefix (orderflow)"),
    click.option(
        "--partitions",
        type=POSITIVE_INT,
        default=6,
        help="partitions of topics created at start (6)",
    ),
    click.option("--no-ensure-topics", is_flag=True, help="do not create missing topics at start"),
    click.option("--log-level", default="INFO", callback=_log_level, help="logging level (INFO)"),
)


def resolve_services(
    *,
    database_url: str | None,
    bootstrap_servers: str | None,
    topic_prefix: str,
    partitions: int,
    no_ensure_topics: bool,
    log_level: str,
    settings: Settings,
) -> ServiceOptions:
    """The :class:`ServiceOptions` of the parsed flags, ``settings`` filling what is not given.

    A missing database or Kafka is a usage error (exit status 2) naming its flag
    and its environment variable.
    """
    database_url = database_url or settings.database_url
    bootstrap_servers = bootstrap_servers or settings.kafka_bootstrap_servers
    # Inside a command, its context: the error is printed with the command's usage line.
    ctx = click.get_current_context(silent=True)
    if not database_url:
        raise click.UsageError("no database: pass --database-url or set DATABASE_URL", ctx)
    if not bootstrap_servers:
        raise click.UsageError(
            "no Kafka: pass --bootstrap-servers or set KAFKA_BOOTSTRAP_SERVERS", ctx
        )
    return ServiceOptions(
        database_url=database_url,
        bootstrap_servers=bootstrap_servers,
        topic_prefix=topic_prefix,
        partitions=partitions,
        ensure_topics=not no_ensure_topics,
        log_level=log_level,
    )


def service_options(command: Callable[..., _R]) -> Callable[..., _R]:
    """Give a click command the shared flags; it receives them as ``services``.

    Use it under ``@click.command``: the command's function takes a keyword
    ``services`` (:class:`ServiceOptions`, resolved with the environment's
    ``Settings`` when the command runs) instead of the six flags.
    """

    @functools.wraps(command)
    def with_services(
        *args: Any,
        database_url: str | None,
        bootstrap_servers: str | None,
        topic_prefix: str,
        partitions: int,
        no_ensure_topics: bool,
        log_level: str,
        **options: Any,
    ) -> _R:
        services = resolve_services(
            database_url=database_url,
            bootstrap_servers=bootstrap_servers,
            topic_prefix=topic_prefix,
            partitions=partitions,
            no_ensure_topics=no_ensure_topics,
            log_level=log_level,
            settings=Settings.from_env(),
        )
        return command(*args, services=services, **options)

    decorated: Callable[..., _R] = with_services
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return decorated


def configure_logging(level: str) -> None:
    """Log to stderr with timestamps and the process id (several processes share a terminal)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
