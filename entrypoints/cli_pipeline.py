"""``orderflow orders|dlq``: draft orders and dead letters.

The two long-running processes' commands (``relay``, ``consume``) are in
``entrypoints.cli_processes``.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import click

from domain.order_input import to_draft_order
from entrypoints.cli_support import (
    EXIT_FAILED,
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    UUID,
    CliContext,
    CliError,
    UsageError,
    finish,
    json_kind,
    pass_cli,
    read_json,
)

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


class RawEpilogCommand(click.Command):
    """A command whose epilog is printed as written (a table must keep its columns)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Write the epilog unwrapped, after a blank line."""
        if self.epilog:
            formatter.write("\n" + self.epilog)


# -- orders -------------------------------------------------------------------------------


@click.group("orders")
def orders() -> None:
    """Draft orders."""


@orders.command(
    "approve",
    cls=RawEpilogCommand,
    short_help="approve a draft order (JSON file)",
    epilog=ORDER_FILE_HELP,
)
@click.option("--org", type=UUID, required=True, help="the organisation (UUID)")
@click.option("--file", "path", required=True, help="order JSON file, '-' for stdin (format below)")
@pass_cli
def orders_approve(cli: CliContext, org: uuid.UUID, path: str) -> None:
    """Approve a draft order and request its push (order + outbox event in one transaction).

    Prints the draft_order_id and the event_id.
    """
    from entrypoints import bootstrap
    from producer.approval import approve_draft_order

    data = read_json(path, "order", unique_keys=True)
    if not isinstance(data, dict):
        raise CliError(
            f"order must be a JSON object, not a JSON {json_kind(data)} "
            "(see `orderflow orders approve --help`)"
        )
    if data.get("id") is None:
        data = {**data, "id": str(uuid.uuid4())}
    # Every problem at once (InvalidDraftOrder, exit 1), before anything is written.
    order = to_draft_order(data, org_id=org)
    uow = bootstrap.sql_unit_of_work(database_url=cli.settings.require_database_url())
    event = approve_draft_order(uow, org, order)
    cli.print_json({"draft_order_id": str(order.id), "event_id": str(event.event_id)})


@orders.command("push")
@click.option("--org", type=UUID, required=True, help="the organisation (UUID)")
@click.option("--order", "order_id", type=UUID, required=True, help="the draft order (UUID)")
@click.option("--max-retries", type=NON_NEGATIVE_INT, default=3, show_default=True)
@click.option("--retry-delay-base", type=NON_NEGATIVE_FLOAT, default=1.0, show_default=True)
@pass_cli
def orders_push(
    cli: CliContext,
    org: uuid.UUID,
    order_id: uuid.UUID,
    max_retries: int,
    retry_delay_base: float,
) -> None:
    """Push an approved order now (synchronous PushOrchestrator)."""
    from entrypoints import bootstrap
    from entrypoints.cli_views import push_view

    database_url = cli.settings.require_database_url()
    uow = bootstrap.sql_unit_of_work(database_url=database_url)
    with uow:
        order = uow.draft_orders.get(org, order_id)
    if order is None:
        raise CliError(f"no draft order {order_id} in organisation {org}")
    orchestrator = bootstrap.build_push_orchestrator(database_url=database_url)
    entry = orchestrator.push_order(
        org, order, max_retries=max_retries, retry_delay_base=retry_delay_base
    )
    cli.print_json(push_view(entry))
    if str(entry.status) == "FAILED":
        # FAILED is final for this round's keys: pushing again is its own command.
        sys.stderr.write(
            f"orderflow: the push FAILED; once the cause is fixed, push it again with: "
            f"orderflow orders retry --org {org} --order {order_id}\n"
        )
    finish(0 if str(entry.status) == "SUCCESS" else EXIT_FAILED)


@orders.command(
    "retry",
    short_help="push a FAILED order again once its cause is fixed (new push round, via the worker)",
)
@click.option("--org", type=UUID, required=True, help="the organisation (UUID)")
@click.option("--order", "order_id", type=UUID, required=True, help="the draft order (UUID)")
@pass_cli
def orders_retry(cli: CliContext, org: uuid.UUID, order_id: uuid.UUID) -> None:
    """Push a draft order again whose latest push round FAILED.

    Writes a new PushRequested (a new idempotency key, linked to the failed one
    in the push log) for the relay and push worker. Works for orders approved
    here and for requests that came straight from upstream. An order already
    exported (SUCCESS) or being pushed is skipped, with why (exit 0); no
    recorded push attempt: exit 1.
    """
    from entrypoints import bootstrap
    from producer.push_again import push_again

    uow = bootstrap.sql_unit_of_work(database_url=cli.settings.require_database_url())
    outcome = push_again(uow, org, order_id)
    cli.print_json(outcome.view())
    finish(0 if outcome.ok else EXIT_FAILED)


# -- dlq ----------------------------------------------------------------------------------


@click.group("dlq")
def dlq() -> None:
    """Dead letters."""


def _dlq_options(function: Any) -> Any:
    """The options ``dlq list`` and ``dlq replay`` share."""
    for option in reversed(
        (
            click.option(
                "--topic-prefix", default="orderflow", show_default=True, help="topic prefix"
            ),
            click.option("--bootstrap-servers", help="Kafka ($KAFKA_BOOTSTRAP_SERVERS)"),
            click.option(
                "--timeout", type=float, default=30.0, show_default=True, help="seconds to read/ack"
            ),
        )
    ):
        function = option(function)
    return function


def _kafka_servers(cli: CliContext, given: str | None) -> str:
    servers = given or cli.settings.kafka_bootstrap_servers
    if not servers:
        raise UsageError("KAFKA_BOOTSTRAP_SERVERS is not set (or pass --bootstrap-servers)")
    return str(servers)


def _dlq_topic(prefix: str) -> str:
    from adapters.kafka.errors import TopicNameError
    from adapters.kafka.topics import TopicNames

    try:
        return TopicNames(prefix, retry_tiers=0).dlq
    except TopicNameError as exc:
        raise UsageError(str(exc)) from None


@dlq.command("list")
@_dlq_options
@pass_cli
def dlq_list(
    cli: CliContext, topic_prefix: str, bootstrap_servers: str | None, timeout: float
) -> None:
    """List the DLQ records present now (no values)."""
    from entrypoints.dlq import DlqError, list_records

    topic = _dlq_topic(topic_prefix)
    try:
        list_records(_kafka_servers(cli, bootstrap_servers), topic, cli.out, timeout)
    except DlqError as exc:
        raise CliError(str(exc)) from None


@dlq.command("replay")
@_dlq_options
@click.option(
    "--offset",
    "offsets",
    multiple=True,
    metavar="PARTITION:OFFSET",
    help="a DLQ record to replay (repeatable)",
)
@click.option("--all", "replay_all", is_flag=True, help="replay every DLQ record")
@click.option("--event-id", type=UUID, help="only records of this event_id")
@pass_cli
def dlq_replay(
    cli: CliContext,
    topic_prefix: str,
    bootstrap_servers: str | None,
    timeout: float,
    offsets: tuple[str, ...],
    replay_all: bool,
    event_id: uuid.UUID | None,
) -> None:
    """Push failed orders again; republish other DLQ records to their original topic."""
    from entrypoints import bootstrap
    from entrypoints.dlq import DlqError, parse_offset, replay

    if replay_all and offsets:
        raise UsageError("give --offset or --all, not both")
    if not (replay_all or offsets or event_id):
        raise UsageError("nothing selected: give --offset PARTITION:OFFSET, --all or --event-id")
    if not cli.settings.database_url:
        # Without the push log a failed push cannot be told from other dead letters,
        # and republishing it would do nothing (its keys are FAILED for good). Like a
        # missing flag: a usage error.
        raise UsageError(
            "DATABASE_URL is not set: dlq replay reads the push log to push failed orders again"
        )
    try:
        selected = [parse_offset(o) for o in offsets] if offsets else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _dlq_topic(topic_prefix)
    try:
        summary = replay(
            _kafka_servers(cli, bootstrap_servers),
            topic_prefix,
            offsets=selected,
            event_id=str(event_id) if event_id else None,
            timeout=timeout,
            push_again=bootstrap.push_again_for(cli.settings.database_url),
        )
    except (DlqError, ValueError) as exc:
        raise CliError(str(exc)) from None
    cli.print_json(summary.view())
    finish(0 if summary.ok else EXIT_FAILED)


COMMANDS: tuple[click.Command, ...] = (orders, dlq)
