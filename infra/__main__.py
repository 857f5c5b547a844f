"""Command line: ``python -m infra up|down|status|env [--services postgres,kafka,sftp]``.

``up`` starts (or reuses) the local services and prints ``export KEY=value`` lines, so
``eval "$(python -m infra up)"`` works; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from infra.compose import compose_endpoints
from infra.layout import default_state_dir
from infra.local import ALL_SERVICES, InfraError, down, ensure_up, read_endpoints, status


def _progress(message: str) -> None:
    print(f"[infra] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m infra``."""
    parser = argparse.ArgumentParser(
        prog="python -m infra",
        description="Local PostgreSQL 15, Apache Kafka 4 (KRaft) and OpenSSH SFTP, no Docker.",
    )
    parser.add_argument(
        "command",
        choices=("up", "down", "status", "env", "compose-env"),
        help="up: start/reuse and print endpoints; down: stop; status: show; "
        "env: print the endpoints of the last `up`; "
        "compose-env: prepare keys for docker-compose.yml and print its endpoints",
    )
    parser.add_argument(
        "--services",
        default=",".join(ALL_SERVICES),
        help="comma-separated subset of: %(default)s",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="state dir (default: $ORDERFLOW_INFRA_DIR or <repo>/.infra)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            endpoints = ensure_up(args.services, state_dir=args.state_dir, progress=_progress)
            sys.stdout.write(endpoints.env_script())
        elif args.command == "down":
            down(args.services, state_dir=args.state_dir, progress=_progress)
        elif args.command == "status":
            for entry in status(state_dir=args.state_dir):
                print(entry.line())
        elif args.command == "compose-env":
            script = compose_endpoints(args.state_dir).env_script()
            target = (args.state_dir or default_state_dir()).resolve() / "compose" / "endpoints.env"
            target.write_text(script)
            sys.stdout.write(script)
            _progress(f"wrote {target}")
        else:
            last = read_endpoints(state_dir=args.state_dir)
            if last is None:
                print("no endpoints yet: run `python -m infra up`", file=sys.stderr)
                return 1
            sys.stdout.write(last.env_script())
    except InfraError as exc:
        print(f"[infra] ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
