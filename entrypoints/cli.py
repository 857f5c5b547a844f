"""The ``orderflow`` command line: database, keys, connections, orders, the push log, processes.

One command tree built with click (``entrypoints.cli_admin``,
``entrypoints.cli_pipeline``, ``entrypoints.cli_processes``): typed parameters,
``--help`` at every level, no chained parsers. Every command prints one clear line on
error; no command prints a secret (configs are shown masked). Exit status: 0 done; 1 the
input was invalid (a file, a config, an order, an id that does not exist) or the
operation failed; 2 usage only: the command line itself is wrong (an unknown command, a
missing or malformed flag, a flag combination, a required setting such as
``DATABASE_URL`` not set). A malformed command line prints its usage line and
``orderflow: error: ...`` and exits 2, as ``--help`` exits 0 (``SystemExit``), so
scripts see what they saw with argparse.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TextIO

import click
from sqlalchemy.exc import SQLAlchemyError

from domain.errors import OrderFlowError
from entrypoints import cli_admin, cli_pipeline, cli_processes
from entrypoints.cli_pipeline import ORDER_FILE_HELP
from entrypoints.cli_support import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliContext,
    CliError,
    Exited,
    UsageError,
)
from entrypoints.settings import Settings, SettingsError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ORDER_FILE_HELP",
    "CliError",
    "UsageError",
    "build_cli",
    "main",
]


def build_cli() -> click.Group:
    """The ``orderflow`` command tree."""

    @click.group(
        "orderflow",
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )
    @click.pass_context
    def orderflow(ctx: click.Context) -> None:
        """OrderFlow ERP push pipeline: operate and inspect."""
        # The processes configure their own logging (--log-level, timestamps, pid).
        if ctx.invoked_subcommand not in cli_processes.PROCESSES:
            cli = ctx.find_object(CliContext)
            level = cli.settings.log_level if cli is not None else "WARNING"
            logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")

    for command in (*cli_admin.COMMANDS, *cli_pipeline.COMMANDS, *cli_processes.COMMANDS):
        orderflow.add_command(command)
    return orderflow


def _usage_error(exc: click.UsageError) -> None:
    """Print a malformed command line's usage and error (argparse's form) to stderr."""
    if exc.ctx is not None:
        usage = exc.ctx.get_usage()
        sys.stderr.write("usage:" + usage.removeprefix("Usage:") + "\n")
    sys.stderr.write(f"orderflow: error: {exc.format_message()}\n")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; return the exit status (``orderflow`` console script).

    ``--help`` and a malformed command line raise ``SystemExit`` (0 and 2).
    """
    stream = out if out is not None else sys.stdout
    arguments = list(sys.argv[1:] if argv is None else argv)
    settings = Settings.from_env()
    tree = build_cli()
    try:
        with tree.make_context("orderflow", arguments, obj=CliContext(settings, stream)) as ctx:
            tree.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help, or a group called without a command
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.NoArgsIsHelpError as exc:
        sys.stderr.write(exc.format_message() + "\n")
        raise SystemExit(EXIT_USAGE) from None
    except click.UsageError as exc:
        _usage_error(exc)
        raise SystemExit(EXIT_USAGE) from None
    except Exited as exc:
        return exc.status
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
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
