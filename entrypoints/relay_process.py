"""``orderflow relay``: the relay process's command line (flags, logging, exit status)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from entrypoints.process_args import add_service_arguments, configure_logging, require_services
from entrypoints.relay_wiring import RelayConfig, run_relay
from producer.relay_settings import RelaySettings

_log = logging.getLogger("orderflow.relay")

#: Program name in the relay's usage line.
RELAY_PROG = "orderflow relay"


def _parser(prog: str = RELAY_PROG) -> argparse.ArgumentParser:
    defaults = RelaySettings()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Publish committed outbox events to Kafka (one leader among all relays).",
    )
    add_service_arguments(parser)
    parser.add_argument(
        "--replication-factor", type=int, default=1, help="replication of created topics (1)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="rows per claim"
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=defaults.max_in_flight,
        help="most unacknowledged events at once",
    )
    parser.add_argument(
        "--idle-poll-s",
        type=float,
        default=defaults.idle_poll_s,
        help="longest wait for a NOTIFY before polling when idle",
    )
    parser.add_argument(
        "--flush-timeout-s",
        type=float,
        default=defaults.flush_timeout_s,
        help="longest wait for acknowledgements on stop",
    )
    parser.add_argument(
        "--drain",
        "--once",
        dest="drain",
        action="store_true",
        help="exit 0 once nothing is left to publish",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = RELAY_PROG) -> int:
    """``orderflow relay``: run one relay process; 0 on a clean stop.

    ``prog`` names the command in usage and error lines.
    """
    parser = _parser(prog)
    args = parser.parse_args(argv)
    require_services(parser, args)
    configure_logging(args.log_level)
    try:
        settings = RelaySettings(
            batch_size=args.batch_size,
            max_in_flight=args.max_in_flight,
            idle_poll_s=args.idle_poll_s,
            flush_timeout_s=args.flush_timeout_s,
            drain=args.drain,
        )
        config = RelayConfig(
            database_url=args.database_url,
            bootstrap_servers=args.bootstrap_servers,
            topic_prefix=args.topic_prefix,
            partitions=args.partitions,
            replication_factor=args.replication_factor,
            ensure_topics=not args.no_ensure_topics,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        outcome = run_relay(config, settings)
    except Exception as exc:
        # One line for the operator; the traceback only at DEBUG.
        _log.debug("Relay failed", exc_info=True)
        print(f"relay: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    _log.info("Relay exited: %s", outcome.value)
    return 0
