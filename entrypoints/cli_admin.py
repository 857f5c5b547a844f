"""``orderflow db|keys|connections|outbox|push-log``: schema, keys, connections, the outbox.

The commands import their dependencies when they run, so ``--help`` stays fast
and needs no database driver or Kafka client loaded.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from entrypoints.cli_support import (
    DURATION,
    EXIT_FAILED,
    POSITIVE_INT,
    UUID,
    CliContext,
    CliError,
    finish,
    pass_cli,
    read_json,
)

# -- db -----------------------------------------------------------------------------------


@click.group("db")
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="target revision")
@pass_cli
def db_upgrade(cli: CliContext, revision: str) -> None:
    """Apply migrations (Alembic)."""
    from alembic.util.exc import CommandError

    from adapters.postgres import migrate

    url = cli.settings.require_database_url()
    try:
        migrate.upgrade(url, revision)
    except CommandError as exc:  # e.g. an unknown --revision
        raise CliError(str(exc)) from None
    cli.write(f"database upgraded to {migrate.current_revision(url)}\n")


@db.command("current")
@pass_cli
def db_current(cli: CliContext) -> None:
    """Show the current and head revisions."""
    from adapters.postgres import migrate

    url = cli.settings.require_database_url()
    cli.write(f"current={migrate.current_revision(url)} head={migrate.head_revision()}\n")


# -- keys ---------------------------------------------------------------------------------


@click.group("keys")
def keys() -> None:
    """Master keys."""


@keys.command("generate")
@pass_cli
def keys_generate(cli: CliContext) -> None:
    """Print a new ENCRYPTION_MASTER_KEY."""
    from adapters.crypto.keys import generate_master_key

    cli.write(generate_master_key() + "\n")


@keys.command("rewrap")
@click.option("--dry-run", is_flag=True, help="count only, change nothing")
@click.option(
    "--batch-size", type=POSITIVE_INT, default=100, show_default=True, help="rows per transaction"
)
@pass_cli
def keys_rewrap(cli: CliContext, dry_run: bool, batch_size: int) -> None:
    """Re-encrypt every stored config under ENCRYPTION_MASTER_KEY.

    Unbound configs are bound to their row's org and connector type; running
    it again changes nothing.
    """
    from adapters.crypto.encryption import ConfigCipher
    from entrypoints.key_rotation import rewrap_all

    report = rewrap_all(
        cli.settings.require_database_url(),
        ConfigCipher.from_env(),
        dry_run=dry_run,
        batch_size=batch_size,
    )
    cli.print_json(report.view())
    finish(0 if report.ok else EXIT_FAILED)


# -- connections --------------------------------------------------------------------------


@click.group("connections")
def connections() -> None:
    """ERP connections."""


@connections.command("create")
@click.option("--org", type=UUID, required=True, help="the organisation (UUID)")
@click.option("--type", "connector_type", required=True, help="connector type, e.g. MOCK")
@click.option(
    "--config-file",
    required=True,
    help="JSON config file, '-' for stdin (keeps secrets out of the shell history)",
)
@pass_cli
def connections_create(cli: CliContext, org: Any, connector_type: str, config_file: str) -> None:
    """Store an encrypted connection (config as JSON)."""
    from entrypoints import bootstrap

    config = read_json(config_file, "config")
    create = bootstrap.connection_admin(cli.settings.require_database_url()).create
    cli.print_json(create(org, connector_type, config))


@connections.command("list")
@click.option("--org", type=UUID, help="only this organisation's")
@pass_cli
def connections_list(cli: CliContext, org: Any) -> None:
    """List connections with masked configs (no secrets)."""
    from entrypoints import bootstrap

    cli.print_json(bootstrap.connection_admin(cli.settings.require_database_url()).list(org))


@connections.command("test")
@click.option("--org", type=UUID, required=True, help="the organisation (UUID)")
@pass_cli
def connections_test(cli: CliContext, org: Any) -> None:
    """Test the organisation's active connection."""
    from entrypoints import bootstrap

    view = bootstrap.connection_admin(cli.settings.require_database_url()).test(org)
    cli.print_json(view)
    finish(0 if view["success"] else EXIT_FAILED)


@connections.command("disable")
@click.option("--id", "connection_id", type=UUID, required=True, help="the connection (UUID)")
@pass_cli
def connections_disable(cli: CliContext, connection_id: Any) -> None:
    """Disable a connection."""
    from entrypoints import bootstrap

    admin = bootstrap.connection_admin(cli.settings.require_database_url())
    cli.print_json(admin.disable(connection_id))


# -- outbox -------------------------------------------------------------------------------


@click.group("outbox")
def outbox() -> None:
    """The transactional outbox."""


@outbox.command("status")
@pass_cli
def outbox_status(cli: CliContext) -> None:
    """Backlog waiting for the relay and records of published events kept."""
    from adapters.postgres.engine import make_engine
    from adapters.postgres.outbox_maintenance import outbox_status as read_status

    engine = make_engine(cli.settings.require_database_url())
    try:
        status = read_status(engine)
    finally:
        engine.dispose()
    oldest = status.oldest_unpublished_at
    cli.print_json(
        {
            "unpublished": status.unpublished,
            "published_kept": status.published,
            "oldest_unpublished_at": oldest.isoformat() if oldest else None,
        }
    )


@outbox.command("prune")
@click.option("--older-than", type=DURATION, required=True, help="retention, e.g. 7d, 12h, 30m")
@click.option("--dry-run", is_flag=True, help="only count what would go")
@pass_cli
def outbox_prune(cli: CliContext, older_than: timedelta, dry_run: bool) -> None:
    """Delete records of events published longer ago than --older-than (never a waiting one)."""
    from adapters.postgres.engine import make_engine
    from adapters.postgres.outbox_maintenance import count_prunable, prune_published

    engine = make_engine(cli.settings.require_database_url())
    try:
        if dry_run:
            cli.print_json({"would_delete": count_prunable(engine, older_than)})
        else:
            cli.print_json({"deleted": prune_published(engine, older_than)})
    finally:
        engine.dispose()


# -- push-log -----------------------------------------------------------------------------


@click.command("push-log")
@click.option("--org", type=UUID, required=True, help="the organisation (UUID)")
@click.option("--order", type=UUID, required=True, help="the draft order (UUID)")
@pass_cli
def push_log(cli: CliContext, org: Any, order: Any) -> None:
    """Push attempts of one draft order."""
    from entrypoints import bootstrap
    from entrypoints.cli_views import push_view

    uow = bootstrap.sql_unit_of_work(database_url=cli.settings.require_database_url())
    with uow:
        entries = uow.push_log.list_for_order(org, order)
    cli.print_json([push_view(e) for e in entries])


COMMANDS: tuple[click.Command, ...] = (db, keys, connections, outbox, push_log)
