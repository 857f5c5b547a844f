"""Command-line arguments shared by the long-running processes (relay and push worker).

Both need the same connection settings; declaring them once keeps their flags,
defaults and error texts identical.
"""

from __future__ import annotations

import argparse
import logging
import os


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the connection, topic and logging flags (defaults from the environment)."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="SQLAlchemy URL of the database (default: $DATABASE_URL)",
    )
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
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
