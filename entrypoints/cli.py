"""The ``orderflow`` command line: database, keys, connections, orders and the push log.

Every command prints one clear line and exits non-zero on bad input; no
command prints a secret (configs are shown masked).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError

from domain.errors import OrderFlowError
from entrypoints.settings import Settings, SettingsError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace, Settings, TextIO], int]


class CliError(Exception):
    """Bad input on the command line: printed as one line, exit status 2."""


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def _read_json(path: str, what: str) -> Any:
    """Read JSON from ``path`` ('-' is standard input) with a clear error."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {what} file {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{what} file {path!r} is not UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the document may hold secrets.
        raise CliError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None


def _print_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


# -- db -----------------------------------------------------------------------------------


def _db_upgrade(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.postgres import migrate

    url = settings.require_database_url()
    migrate.upgrade(url, args.revision)
    out.write(f"database upgraded to {migrate.current_revision(url)}\n")
    return EXIT_OK


def _db_current(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.postgres import migrate

    url = settings.require_database_url()
    out.write(f"current={migrate.current_revision(url)} head={migrate.head_revision()}\n")
    return EXIT_OK


# -- keys ---------------------------------------------------------------------------------


def _keys_generate(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.crypto.keys import generate_master_key

    out.write(generate_master_key() + "\n")
    return EXIT_OK


def _keys_rewrap(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.crypto.encryption import ConfigCipher
    from entrypoints.key_rotation import rewrap_all

    if args.batch_size < 1:
        raise CliError("--batch-size must be at least 1")
    report = rewrap_all(
        settings.require_database_url(),
        ConfigCipher.from_env(),
        dry_run=args.dry_run,
        batch_size=args.batch_size,
    )
    _print_json(out, report.view())
    return EXIT_OK if report.ok else EXIT_FAILED


# -- dlq ----------------------------------------------------------------------------------


def _kafka_servers(args: argparse.Namespace, settings: Settings) -> str:
    servers = args.bootstrap_servers or settings.kafka_bootstrap_servers
    if not servers:
        raise CliError("KAFKA_BOOTSTRAP_SERVERS is not set (or pass --bootstrap-servers)")
    return str(servers)


def _dlq_list(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.kafka.errors import TopicNameError
    from adapters.kafka.topics import TopicNames
    from entrypoints.dlq import DlqError, list_records

    try:
        topic = TopicNames(args.topic_prefix, retry_tiers=0).dlq
        list_records(_kafka_servers(args, settings), topic, out, args.timeout)
    except (DlqError, TopicNameError) as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


def _dlq_replay(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.kafka.errors import TopicNameError
    from entrypoints.dlq import DlqError, parse_offset, replay

    if args.all and args.offset:
        raise CliError("give --offset or --all, not both")
    if not (args.all or args.offset or args.event_id):
        raise CliError("nothing selected: give --offset PARTITION:OFFSET, --all or --event-id")
    try:
        offsets = [parse_offset(o) for o in args.offset] if args.offset else None
        summary = replay(
            _kafka_servers(args, settings),
            args.topic_prefix,
            offsets=offsets,
            event_id=str(args.event_id) if args.event_id else None,
            timeout=args.timeout,
        )
    except (DlqError, TopicNameError, ValueError) as exc:
        raise CliError(str(exc)) from None
    _print_json(out, summary.view())
    return EXIT_OK if summary.ok else EXIT_FAILED


# -- connections --------------------------------------------------------------------------


def _connection_view(record: Any) -> dict[str, Any]:
    from entrypoints.connection_views import connection_view

    return connection_view(record)


def _connections_create(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.connectors.registry import ConnectorRegistry
    from adapters.crypto.encryption import ConfigCipher
    from domain.config_schema import ConfigValidationError, config_errors
    from domain.records import ConnectionRecord
    from entrypoints import bootstrap
    from entrypoints.connection_views import config_view, schema_of

    config = _read_json(args.config_file, "config")
    bootstrap.registered_connector_type(args.type)  # "Invalid connector_type: X"
    connector = ConnectorRegistry.get(args.type)
    # A connector without a config_schema checks its config at export: any object goes.
    errors = config_errors(schema_of(connector), config)
    if errors:
        raise ConfigValidationError(errors)
    blob = ConfigCipher.from_env().encrypt_config(config, org_id=args.org, connector_type=args.type)
    uow = bootstrap.sql_unit_of_work(database_url=settings.require_database_url())
    with uow:
        record = uow.connections.add(ConnectionRecord.new(args.org, args.type, blob))
        uow.commit()
    _print_json(out, {**_connection_view(record), **config_view(args.type, connector, config)})
    return EXIT_OK


def _connections_list(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.connectors.registry import ConnectorRegistry
    from adapters.crypto.keys import EncryptionError
    from entrypoints import bootstrap
    from entrypoints.connection_views import Decryptor, listed_connections

    uow = bootstrap.sql_unit_of_work(database_url=settings.require_database_url())
    with uow:
        records = uow.connections.list(args.org)
    cipher: Decryptor | None = None
    reason = ""
    try:
        cipher = bootstrap.default_cipher()
    except EncryptionError as exc:  # e.g. no ENCRYPTION_MASTER_KEY: list without configs
        reason = str(exc)
    views = listed_connections(records, cipher, ConnectorRegistry, no_cipher_reason=reason)
    _print_json(out, views)
    return EXIT_OK


def _connections_test(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.connectors.registry import ConnectorRegistry
    from domain.records import utc_now
    from entrypoints import bootstrap

    uow = bootstrap.sql_unit_of_work(database_url=settings.require_database_url())
    with uow:
        record = uow.connections.get_active(args.org)
    if record is None:
        raise CliError(f"No active ERP connection for organisation {args.org}")
    config = bootstrap.default_cipher().decrypt_config(
        record.config_encrypted, org_id=record.org_id, connector_type=record.connector_type
    )
    result = ConnectorRegistry.get(record.connector_type).test_connection(config)
    if result.success:
        with uow:
            uow.connections.mark_tested(record.id, at=utc_now())
            uow.commit()
    _print_json(
        out,
        {
            "connection_id": str(record.id),
            "connector_type": record.connector_type,
            "success": result.success,
            "stage": result.stage,
            "error_message": result.error_message,
            "latency_ms": round(result.latency_ms, 1),
        },
    )
    return EXIT_OK if result.success else EXIT_FAILED


def _connections_disable(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from domain.records import utc_now
    from entrypoints import bootstrap

    uow = bootstrap.sql_unit_of_work(database_url=settings.require_database_url())
    with uow:
        record = uow.connections.disable(args.id, now=utc_now())
        uow.commit()
    if record is None:
        raise CliError(f"no ERP connection with id {args.id}")
    _print_json(out, _connection_view(record))
    return EXIT_OK


# -- orders -------------------------------------------------------------------------------


def _orders_approve(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from domain.records import order_from_json
    from entrypoints import bootstrap
    from producer.approval import approve_draft_order

    data = _read_json(args.file, "order")
    if not isinstance(data, dict):
        raise CliError("order must be a JSON object")
    data = {**data, "org_id": str(args.org), "id": str(data.get("id") or uuid.uuid4())}
    data.pop("status", None)
    try:
        order = order_from_json(data)
    except KeyError as exc:
        raise CliError(f"order is missing the field {exc.args[0]!r}") from None
    except (ValueError, TypeError, InvalidOperation) as exc:
        raise CliError(f"order has an invalid value: {type(exc).__name__}") from None
    uow = bootstrap.sql_unit_of_work(database_url=settings.require_database_url())
    event = approve_draft_order(uow, args.org, order)
    _print_json(out, {"draft_order_id": str(order.id), "event_id": str(event.event_id)})
    return EXIT_OK


def _orders_push(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from entrypoints import bootstrap

    database_url = settings.require_database_url()
    uow = bootstrap.sql_unit_of_work(database_url=database_url)
    with uow:
        order = uow.draft_orders.get(args.org, args.order)
    if order is None:
        raise CliError(f"no draft order {args.order} in organisation {args.org}")
    orchestrator = bootstrap.build_push_orchestrator(database_url=database_url)
    entry = orchestrator.push_order(
        args.org, order, max_retries=args.max_retries, retry_delay_base=args.retry_delay_base
    )
    _print_json(out, _push_view(entry))
    return EXIT_OK if str(entry.status) == "SUCCESS" else EXIT_FAILED


def _push_view(entry: Any) -> dict[str, Any]:
    return {
        "idempotency_key": entry.idempotency_key,
        "draft_order_id": str(entry.draft_order_id),
        "status": str(entry.status),
        "connector_type": entry.connector_type,
        "retry_count": entry.retry_count,
        "latency_ms": entry.latency_ms,
        "error_message": entry.error_message,
        "response": entry.response_json,
    }


def _push_log(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from entrypoints import bootstrap

    uow = bootstrap.sql_unit_of_work(database_url=settings.require_database_url())
    with uow:
        entries = uow.push_log.list_for_order(args.org, args.order)
    _print_json(out, [_push_view(e) for e in entries])
    return EXIT_OK


def _duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m`` or ``90s`` as a duration (argparse type)."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.isdigit():
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a whole number with d, h, m or s (e.g. 7d)"
        )
    return timedelta(**{units[unit]: int(number)})


def _outbox_status(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.postgres.engine import make_engine
    from adapters.postgres.outbox_maintenance import outbox_status

    engine = make_engine(settings.require_database_url())
    try:
        status = outbox_status(engine)
    finally:
        engine.dispose()
    oldest = status.oldest_unpublished_at
    _print_json(
        out,
        {
            "unpublished": status.unpublished,
            "published_kept": status.published,
            "oldest_unpublished_at": oldest.isoformat() if oldest else None,
        },
    )
    return EXIT_OK


def _outbox_prune(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.postgres.engine import make_engine
    from adapters.postgres.outbox_maintenance import count_prunable, prune_published

    engine = make_engine(settings.require_database_url())
    try:
        if args.dry_run:
            _print_json(out, {"would_delete": count_prunable(engine, args.older_than)})
        else:
            _print_json(out, {"deleted": prune_published(engine, args.older_than)})
    finally:
        engine.dispose()
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------


_PROCESSES = {
    "relay": "run the outbox relay (PostgreSQL outbox -> Kafka) until SIGTERM",
    "consume": "run the push worker (Kafka requests/retries -> ERP) until SIGTERM",
}


def _run_process(name: str, argv: Sequence[str]) -> int:
    """Hand over to the relay or worker's own command line."""
    if name == "relay":
        from producer.relay import main as relay_main

        return relay_main(list(argv))
    from consumer.worker import main as worker_main

    return worker_main(list(argv))


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``orderflow`` (every level has ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="orderflow", description="OrderFlow ERP push pipeline: operate and inspect."
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    db = groups.add_parser("db", help="database schema").add_subparsers(dest="cmd", required=True)
    up = db.add_parser("upgrade", help="apply migrations (Alembic)")
    up.add_argument("--revision", default="head")
    up.set_defaults(handler=_db_upgrade)
    db.add_parser("current", help="show the current and head revisions").set_defaults(
        handler=_db_current
    )

    keys = groups.add_parser("keys", help="master keys").add_subparsers(dest="cmd", required=True)
    keys.add_parser("generate", help="print a new ENCRYPTION_MASTER_KEY").set_defaults(
        handler=_keys_generate
    )
    rewrap = keys.add_parser(
        "rewrap", help="re-encrypt every stored config under ENCRYPTION_MASTER_KEY (idempotent)"
    )
    rewrap.add_argument("--dry-run", action="store_true", help="count only, change nothing")
    rewrap.add_argument("--batch-size", type=int, default=100, help="rows per transaction")
    rewrap.set_defaults(handler=_keys_rewrap)

    dlq = groups.add_parser("dlq", help="dead letters").add_subparsers(dest="cmd", required=True)
    for name, help_text, handler in (
        ("list", "list the DLQ records present now (no values)", _dlq_list),
        ("replay", "republish DLQ records to their original topic", _dlq_replay),
    ):
        sub = dlq.add_parser(name, help=help_text)
        sub.add_argument("--topic-prefix", default="orderflow", help="topic prefix (orderflow)")
        sub.add_argument("--bootstrap-servers", help="Kafka ($KAFKA_BOOTSTRAP_SERVERS)")
        sub.add_argument("--timeout", type=float, default=30.0, help="seconds to read/ack (30)")
        sub.set_defaults(handler=handler)
        if name == "replay":
            sub.add_argument(
                "--offset",
                action="append",
                metavar="PARTITION:OFFSET",
                help="a DLQ record to replay (repeatable)",
            )
            sub.add_argument("--all", action="store_true", help="replay every DLQ record")
            sub.add_argument("--event-id", type=_uuid, help="only records of this event_id")

    conns = groups.add_parser("connections", help="ERP connections").add_subparsers(
        dest="cmd", required=True
    )
    create = conns.add_parser("create", help="store an encrypted connection (config as JSON)")
    create.add_argument("--org", type=_uuid, required=True)
    create.add_argument("--type", required=True, help="connector type, e.g. DROPZONE_JSON_V1")
    create.add_argument(
        "--config-file",
        required=True,
        help="JSON config file, '-' for stdin (keeps secrets out of the shell history)",
    )
    create.set_defaults(handler=_connections_create)
    listing = conns.add_parser("list", help="list connections with masked configs (no secrets)")
    listing.add_argument("--org", type=_uuid)
    listing.set_defaults(handler=_connections_list)
    test = conns.add_parser("test", help="test the organisation's active connection")
    test.add_argument("--org", type=_uuid, required=True)
    test.set_defaults(handler=_connections_test)
    disable = conns.add_parser("disable", help="disable a connection")
    disable.add_argument("--id", type=_uuid, required=True)
    disable.set_defaults(handler=_connections_disable)

    orders = groups.add_parser("orders", help="draft orders").add_subparsers(
        dest="cmd", required=True
    )
    approve = orders.add_parser("approve", help="approve a draft order (JSON file)")
    approve.add_argument("--org", type=_uuid, required=True)
    approve.add_argument("--file", required=True, help="order JSON file, '-' for stdin")
    approve.set_defaults(handler=_orders_approve)
    push = orders.add_parser("push", help="push an approved order now (synchronous)")
    push.add_argument("--org", type=_uuid, required=True)
    push.add_argument("--order", type=_uuid, required=True)
    push.add_argument("--max-retries", type=int, default=3)
    push.add_argument("--retry-delay-base", type=float, default=1.0)
    push.set_defaults(handler=_orders_push)

    # The long-running processes own their flags; `orderflow relay --help` shows them.
    for name, help_text in _PROCESSES.items():
        process = groups.add_parser(name, help=help_text, add_help=False)
        process.add_argument("args", nargs=argparse.REMAINDER)

    outbox = groups.add_parser("outbox", help="the transactional outbox").add_subparsers(
        dest="cmd", required=True
    )
    outbox.add_parser(
        "status", help="backlog waiting for the relay and published rows kept"
    ).set_defaults(handler=_outbox_status)
    prune = outbox.add_parser(
        "prune", help="delete rows published longer ago than --older-than (never unpublished)"
    )
    prune.add_argument(
        "--older-than", type=_duration, required=True, help="retention, e.g. 7d, 12h, 30m"
    )
    prune.add_argument("--dry-run", action="store_true", help="only count what would go")
    prune.set_defaults(handler=_outbox_prune)

    log = groups.add_parser("push-log", help="push attempts of one draft order")
    log.add_argument("--org", type=_uuid, required=True)
    log.add_argument("--order", type=_uuid, required=True)
    log.set_defaults(handler=_push_log)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; return the exit status (``orderflow`` console script)."""
    stream = out if out is not None else sys.stdout
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in _PROCESSES:
        return _run_process(arguments[0], arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    try:
        return handler(args, settings, stream)
    except (CliError, SettingsError) as exc:
        sys.stderr.write(f"orderflow: error: {exc}\n")
        return EXIT_USAGE
    except (OrderFlowError, ValueError) as exc:
        sys.stderr.write(f"orderflow: error: {exc}\n")
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        # The driver's first line names the problem; the rest repeats the SQL.
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        sys.stderr.write(f"orderflow: database error: {first}\n")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
