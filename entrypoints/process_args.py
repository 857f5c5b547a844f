"""Command-line arguments shared by the long-running processes (relay and push worker).

Both need the same connection settings; declaring them once keeps their flags,
defaults and error texts identical. The defaults come from the environment
through ``entrypoints.settings.Settings``, the one reader of it.
"""

from __future__ import annotations

import argparse
import logging

from entrypoints.settings import Settings


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the connection, topic and logging flags (defaults from the environment)."""
    settings = Settings.from_env()
    parser.add_argument(
        "--database-url",
        default=settings.database_url,
        help="SQLAlchemy URL of the database (default: $DATABASE_URL)",
    )
    parser.add_argument(
        "--bootstrap-servers",
        default=settings.kafka_bootstrap_servers,
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument("--topic-prefix", default="orderflow", help="topic prefix (orderflow)")
    parser.add_argument(
        "--partitions", type=int, default=6, help="partitions of topics created at start (6)"
    )
    parser.add_argument(
        "--no-ensure-topics", action="store_true", help="do not create missing topics at start"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (INFO)")


def require_services(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error unless both the database and Kafka are given."""
    if not args.database_url:
        parser.error("no database: pass --database-url or set DATABASE_URL")
    if not args.bootstrap_servers:
        parser.error("no Kafka: pass --bootstrap-servers or set KAFKA_BOOTSTRAP_SERVERS")


def configure_logging(level: str) -> None:
    """Log to stderr with timestamps and the process id (several processes share a terminal)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
