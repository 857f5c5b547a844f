"""The ``orderflow`` command line: database, keys, connections, orders and the push log.

Every command prints one clear line on error; no command prints a secret
(configs are shown masked). Exit status: 0 done; 1 the input was invalid
(a file, a config, an order, an id that does not exist) or the operation
failed; 2 usage only: the command line itself is wrong (argparse's errors,
a missing or malformed flag, a flag combination, a required setting such as
``DATABASE_URL`` not set).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy.exc import SQLAlchemyError

from domain.errors import OrderFlowError
from domain.order_input import shown_key, to_draft_order
from entrypoints.settings import Settings, SettingsError

if TYPE_CHECKING:  # the commands import their dependencies lazily (fast --help)
    from domain.model import DraftOrder
    from entrypoints.dlq import PushAgainFn

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace, Settings, TextIO], int]

#: ``orders approve --help``: the order file's format (README "Order files" says the same).
ORDER_FILE_HELP = """\
The order file is one JSON object (UTF-8; '-' reads standard input):

  id             UUID      optional: the draft order's id (a new one if absent)
  org_id         UUID      optional: must equal --org if given
  order_number   text      required, unique within the organisation
  customer_code  text      required: the customer's code in the ERP
  currency       text      optional, default "EUR"
  status         text      optional: "DRAFT" or "APPROVED" (approved either way)
  notes          text      optional, default ""
  lines          list      optional, default []: objects with
      line_no       integer   required
      product_code  text      required
      quantity      decimal   required: text such as "2.50", or an integer
      unit_price    decimal   required: same form
      description   text      optional, default ""
      unit          text      optional, default "unit"
  extra          object    optional: free-form JSON metadata
  total          decimal   optional: must equal the sum of quantity * unit_price

Unknown or repeated keys are refused; decimals are never floats (write "2.50",
not 2.50). Every problem is reported at once, with its path (e.g.
lines[1].quantity: required), and nothing is written: exit status 1.
Example: examples/order.json.
"""


class CliError(Exception):
    """Invalid input or a failed operation: printed as one line, exit status 1."""


class UsageError(CliError):
    """The command line itself is wrong (flags, their combination): exit status 2."""


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def _read_json(path: str, what: str, *, unique_keys: bool = False) -> Any:
    """Read JSON from ``path`` ('-' is standard input) with a clear error.

    With ``unique_keys`` a key repeated in an object is refused (``json``
    would silently keep the last value).
    """
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {what} file {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{what} file {path!r} is not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys(what) if unique_keys else None)
    except json.JSONDecodeError as exc:
        # The position only: the document may hold secrets.
        raise CliError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None


def _unique_keys(what: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        built: dict[str, Any] = {}
        for key, value in pairs:
            if key in built:
                raise CliError(f"{what} has the key {shown_key(key)} twice in one object")
            built[key] = value
        return built

    return build


def _positive_int(text: str) -> int:
    """A whole number >= 1 (argparse type)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    """A whole number >= 0 (argparse type)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _non_negative_float(text: str) -> float:
    """A finite number >= 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _print_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


# -- db -----------------------------------------------------------------------------------


def _db_upgrade(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from alembic.util.exc import CommandError

    from adapters.postgres import migrate

    url = settings.require_database_url()
    try:
        migrate.upgrade(url, args.revision)
    except CommandError as exc:  # e.g. an unknown --revision
        raise CliError(str(exc)) from None
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
        raise UsageError("KAFKA_BOOTSTRAP_SERVERS is not set (or pass --bootstrap-servers)")
    return str(servers)


def _dlq_list(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.kafka.errors import TopicNameError
    from adapters.kafka.topics import TopicNames
    from entrypoints.dlq import DlqError, list_records

    try:
        topic = TopicNames(args.topic_prefix, retry_tiers=0).dlq
    except TopicNameError as exc:
        raise UsageError(str(exc)) from None
    try:
        list_records(_kafka_servers(args, settings), topic, out, args.timeout)
    except DlqError as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


def _push_again_fn(database_url: str) -> PushAgainFn:
    """``(org, order id, fallback order) -> PushAgainOutcome`` over the database."""
    from entrypoints import bootstrap
    from producer.push_again import PushAgainOutcome, push_again

    uow = bootstrap.sql_unit_of_work(database_url=database_url)

    def run(org: uuid.UUID, order_id: uuid.UUID, order: DraftOrder) -> PushAgainOutcome:
        return push_again(uow, org, order_id, order=order)

    return run


def _dlq_replay(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from adapters.kafka.errors import TopicNameError
    from adapters.kafka.topics import TopicNames
    from entrypoints.dlq import DlqError, parse_offset, replay

    if args.all and args.offset:
        raise UsageError("give --offset or --all, not both")
    if not (args.all or args.offset or args.event_id):
        raise UsageError("nothing selected: give --offset PARTITION:OFFSET, --all or --event-id")
    if not settings.database_url:
        # Without the push log a failed push cannot be told from other dead letters,
        # and republishing it would do nothing (its keys are FAILED for good). Like a
        # missing flag: a usage error.
        raise UsageError(
            "DATABASE_URL is not set: dlq replay reads the push log to push failed orders again"
        )
    try:
        offsets = [parse_offset(o) for o in args.offset] if args.offset else None
        TopicNames(args.topic_prefix, retry_tiers=0)
    except (TopicNameError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    try:
        summary = replay(
            _kafka_servers(args, settings),
            args.topic_prefix,
            offsets=offsets,
            event_id=str(args.event_id) if args.event_id else None,
            timeout=args.timeout,
            push_again=_push_again_fn(settings.database_url),
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
    from entrypoints import bootstrap
    from producer.approval import approve_draft_order

    data = _read_json(args.file, "order", unique_keys=True)
    if not isinstance(data, dict):
        raise CliError(
            f"order must be a JSON object, not a JSON {_json_kind(data)} "
            "(see `orderflow orders approve --help`)"
        )
    if data.get("id") is None:
        data = {**data, "id": str(uuid.uuid4())}
    # Every problem at once (InvalidDraftOrder, exit 1), before anything is written.
    order = to_draft_order(data, org_id=args.org)
    uow = bootstrap.sql_unit_of_work(database_url=settings.require_database_url())
    event = approve_draft_order(uow, args.org, order)
    _print_json(out, {"draft_order_id": str(order.id), "event_id": str(event.event_id)})
    return EXIT_OK


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return kinds.get(type(value), "null")


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
    if str(entry.status) == "FAILED":
        # FAILED is final for this round's keys: pushing again is its own command.
        sys.stderr.write(
            f"orderflow: the push FAILED; once the cause is fixed, push it again with: "
            f"orderflow orders retry --org {args.org} --order {args.order}\n"
        )
    return EXIT_OK if str(entry.status) == "SUCCESS" else EXIT_FAILED


def _orders_retry(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from entrypoints import bootstrap
    from producer.push_again import push_again

    uow = bootstrap.sql_unit_of_work(database_url=settings.require_database_url())
    outcome = push_again(uow, args.org, args.order)
    _print_json(out, outcome.view())
    return EXIT_OK if outcome.ok else EXIT_FAILED


def _push_view(entry: Any) -> dict[str, Any]:
    return {
        "idempotency_key": entry.idempotency_key,
        "draft_order_id": str(entry.draft_order_id),
        "status": str(entry.status),
        "push_round": entry.push_round,
        "attempt": entry.attempt,
        "previous_idempotency_key": entry.previous_idempotency_key,
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

        return relay_main(list(argv), prog="orderflow relay")
    from entrypoints.worker_process import main as worker_main

    return worker_main(list(argv), prog="orderflow consume")


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
        "rewrap",
        help="re-encrypt every stored config under ENCRYPTION_MASTER_KEY, binding unbound ones "
        "to their row's org and connector type (idempotent)",
    )
    rewrap.add_argument("--dry-run", action="store_true", help="count only, change nothing")
    rewrap.add_argument(
        "--batch-size", type=_positive_int, default=100, help="rows per transaction"
    )
    rewrap.set_defaults(handler=_keys_rewrap)

    dlq = groups.add_parser("dlq", help="dead letters").add_subparsers(dest="cmd", required=True)
    for name, help_text, handler in (
        ("list", "list the DLQ records present now (no values)", _dlq_list),
        (
            "replay",
            "push failed orders again; republish other DLQ records to their original topic",
            _dlq_replay,
        ),
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
    approve = orders.add_parser(
        "approve",
        help="approve a draft order (JSON file)",
        description="Approve a draft order and request its push (order + outbox event in\n"
        "one transaction); prints the draft_order_id and the event_id.",
        epilog=ORDER_FILE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    approve.add_argument("--org", type=_uuid, required=True, help="the organisation (UUID)")
    approve.add_argument(
        "--file", required=True, help="order JSON file, '-' for stdin (format below)"
    )
    approve.set_defaults(handler=_orders_approve)
    push = orders.add_parser("push", help="push an approved order now (synchronous)")
    push.add_argument("--org", type=_uuid, required=True)
    push.add_argument("--order", type=_uuid, required=True)
    push.add_argument("--max-retries", type=_non_negative_int, default=3)
    push.add_argument("--retry-delay-base", type=_non_negative_float, default=1.0)
    push.set_defaults(handler=_orders_push)
    retry = orders.add_parser(
        "retry",
        help="push a FAILED order again once its cause is fixed (new push round, via the worker)",
        description=(
            "Push a draft order again whose latest push round FAILED: writes a new "
            "PushRequested (a new idempotency key, linked to the failed one in the push "
            "log) for the relay and push worker. Works for orders approved here and for "
            "requests that came straight from upstream. An order already exported "
            "(SUCCESS) or being pushed is skipped, with why (exit 0); no recorded push "
            "attempt: exit 1."
        ),
    )
    retry.add_argument("--org", type=_uuid, required=True)
    retry.add_argument("--order", type=_uuid, required=True)
    retry.set_defaults(handler=_orders_retry)

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
    except (UsageError, SettingsError) as exc:
        sys.stderr.write(f"orderflow: error: {exc}\n")
        return EXIT_USAGE
    except (CliError, OrderFlowError, ValueError) as exc:
        sys.stderr.write(f"orderflow: error: {exc}\n")
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        # The driver's first line names the problem; the rest repeats the SQL.
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        sys.stderr.write(f"orderflow: database error: {first}\n")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
