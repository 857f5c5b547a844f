"""``orderflow relay``: the relay process, from its parsed flags to its exit status.

The flags are click options of the ``relay`` command (``entrypoints.cli_processes``,
the shared ones from ``entrypoints.process_args``); this module turns them into a
:class:`~entrypoints.relay_wiring.RelayConfig` (:func:`relay_config`) and runs the
relay with logging configured (:func:`run`): 0 on a clean stop, 1 on a failure.
"""

from __future__ import annotations

import logging
import sys

from entrypoints.process_args import ServiceOptions, configure_logging
from entrypoints.relay_wiring import RelayConfig, run_relay
from producer.relay_settings import RelaySettings

_log = logging.getLogger("orderflow.relay")


def relay_config(services: ServiceOptions, *, replication_factor: int) -> RelayConfig:
    """The :class:`RelayConfig` of ``orderflow relay``'s connection and topic flags."""
    return RelayConfig(
        database_url=services.database_url,
        bootstrap_servers=services.bootstrap_servers,
        topic_prefix=services.topic_prefix,
        partitions=services.partitions,
        replication_factor=replication_factor,
        ensure_topics=services.ensure_topics,
    )


def run(config: RelayConfig, settings: RelaySettings, *, log_level: str) -> int:
    """Run one relay process until it stops; its exit status (0 clean stop, 1 failure).

    A failure is reported as one ``relay: error: ...`` line on stderr.
    """
    configure_logging(log_level)
    try:
        outcome = run_relay(config, settings)
    except Exception as exc:
        # One line for the operator; the traceback only at DEBUG.
        _log.debug("Relay failed", exc_info=True)
        print(f"relay: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    _log.info("Relay exited: %s", outcome.value)
    return 0
