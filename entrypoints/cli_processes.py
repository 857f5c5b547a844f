"""``orderflow relay|consume``: the two long-running processes' commands.

Their flags are click options like every other command's (one parser tree:
usage errors and ``--help`` made the same way; the shared connection flags come
from ``entrypoints.process_args``). The processes themselves are in
``entrypoints.relay_process`` and ``entrypoints.worker_process``, imported only
when a command runs (they load Kafka, SQLAlchemy and the connectors).
"""

from __future__ import annotations

from typing import Any

import click

from consumer.handling import RetrySettings
from consumer.push_attempt import DEFAULT_LEASE_SECONDS
from consumer.worker import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_PIPELINES
from entrypoints.cli_support import (
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    finish,
)
from entrypoints.process_args import ServiceOptions, service_options
from producer.relay_settings import RelaySettings

_RELAY_DEFAULTS = RelaySettings()
_RETRY_DEFAULTS = RetrySettings()


@click.command("relay")
@service_options
@click.option(
    "--replication-factor", type=POSITIVE_INT, default=1, help="replication of created topics (1)"
)
@click.option(
    "--batch-size", type=POSITIVE_INT, default=_RELAY_DEFAULTS.batch_size, help="rows per claim"
)
@click.option(
    "--max-in-flight",
    type=POSITIVE_INT,
    default=_RELAY_DEFAULTS.max_in_flight,
    help="most unacknowledged events at once",
)
@click.option(
    "--idle-poll-s",
    type=POSITIVE_FLOAT,
    default=_RELAY_DEFAULTS.idle_poll_s,
    help="longest wait for a NOTIFY before polling when idle",
)
@click.option(
    "--flush-timeout-s",
    type=NON_NEGATIVE_FLOAT,
    default=_RELAY_DEFAULTS.flush_timeout_s,
    help="longest wait for acknowledgements on stop",
)
@click.option(
    "--drain", "--once", "drain", is_flag=True, help="exit 0 once nothing is left to publish"
)
def relay(
    *,
    services: ServiceOptions,
    replication_factor: int,
    batch_size: int,
    max_in_flight: int,
    idle_poll_s: float,
    flush_timeout_s: float,
    drain: bool,
) -> None:
    """Run the outbox relay (PostgreSQL outbox -> Kafka) until SIGTERM.

    Publish committed outbox events to Kafka (one leader among all relays).
    """
    try:
        settings = RelaySettings(
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            idle_poll_s=idle_poll_s,
            flush_timeout_s=flush_timeout_s,
            drain=drain,
        )
    except ValueError as exc:
        # Each flag's type checked its own value: what is left is their combination
        # (max_in_flight >= batch_size). Name the flags the message is about.
        given = {
            "batch_size": batch_size,
            "max_in_flight": max_in_flight,
            "idle_poll_s": idle_poll_s,
            "flush_timeout_s": flush_timeout_s,
        }
        named = [name for name in given if name in str(exc)]
        flags = ", ".join(f"--{name.replace('_', '-')} {given[name]}" for name in named)
        raise click.UsageError(f"{exc} ({flags})") from None
    from entrypoints import relay_process

    config = relay_process.relay_config(services, replication_factor=replication_factor)
    finish(relay_process.run(config, settings, log_level=services.log_level))


def _instance_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty")
    return value


@click.command("consume")
@service_options
@click.option("--group", default="orderflow-push", help="consumer group id")
@click.option(
    "--concurrency",
    type=POSITIVE_INT,
    default=DEFAULT_CONCURRENCY,
    help=f"parallel ERP calls ({DEFAULT_CONCURRENCY})",
)
@click.option(
    "--pipelines",
    type=POSITIVE_INT,
    default=DEFAULT_PIPELINES,
    help=f"batches in progress at once ({DEFAULT_PIPELINES})",
)
@click.option(
    "--batch-size",
    type=POSITIVE_INT,
    default=DEFAULT_BATCH_SIZE,
    help="most records of one batch, claimed and recorded in one statement each "
    f"({DEFAULT_BATCH_SIZE})",
)
@click.option(
    "--max-retries",
    type=NON_NEGATIVE_INT,
    default=_RETRY_DEFAULTS.max_retries,
    help="retries after a transient error",
)
@click.option(
    "--retry-delay-base",
    type=NON_NEGATIVE_FLOAT,
    default=_RETRY_DEFAULTS.retry_delay_base,
    help=f"delay of retry n is base * 2^n seconds ({_RETRY_DEFAULTS.retry_delay_base})",
)
@click.option(
    "--retry-tiers",
    type=NON_NEGATIVE_INT,
    default=_RETRY_DEFAULTS.retry_tiers,
    help=f"retry tier topics ({_RETRY_DEFAULTS.retry_tiers})",
)
@click.option(
    "--lease-seconds",
    type=POSITIVE_FLOAT,
    default=DEFAULT_LEASE_SECONDS,
    help="how long a claimed attempt is protected from take-over; a crashed worker's "
    f"claims are taken over after it (default {DEFAULT_LEASE_SECONDS:.0f}; must exceed "
    "the slowest connector call)",
)
@click.option(
    "--instance-id",
    default=None,
    callback=_instance_id,
    help="static group membership (Kafka group.instance.id): a worker restarted with "
    "the same id gets its partitions back at once, without a rebalance of the group",
)
def consume(*, services: ServiceOptions, **flags: Any) -> None:
    """Run the push worker (Kafka requests/retries -> ERP) until SIGTERM."""
    # Looked up when the command runs: tests.integration._worker_main wraps worker_config.
    # The flags go on by name: worker_config's keyword parameters are the typed list.
    from entrypoints import worker_process

    config = worker_process.worker_config(services, **flags)
    finish(worker_process.run(config, log_level=services.log_level))


COMMANDS: tuple[click.Command, ...] = (relay, consume)
#: The long-running processes (they set up their own logging).
PROCESSES = frozenset({"relay", "consume"})
