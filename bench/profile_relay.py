"""``make profile-relay``: a py-spy flame graph of our relay draining a backlog.

Fills a scratch database with ``--events`` PushRequested events, then runs
``py-spy record`` over ``orderflow relay --drain`` (every thread:
the main loop and the database thread) and writes
``bench/results/profile-relay.svg`` (open it in a browser) and a speedscope
JSON next to it; a text summary of the hottest frames is printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.kafka.topics import TopicNames, ensure_topics
from bench.relay_bench import PARTITIONS, new_prefix, relay_args
from bench.workload import Services, fill_backlog, scratch_database
from entrypoints.pipeline_processes import ORDERFLOW_MODULE


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("profile-relay: py-spy is not installed (pip install -e '.[bench]')")
    return found


def hottest(speedscope: dict[str, Any], top: int = 12) -> str:
    """The ``top`` innermost frames by samples, per thread, as text."""
    frames = speedscope["shared"]["frames"]
    lines = []
    for profile in speedscope["profiles"]:
        total = sum(profile["weights"]) or 1
        counter: collections.Counter[str] = collections.Counter()
        for stack, weight in zip(profile["samples"], profile["weights"], strict=False):
            if stack:
                frame = frames[stack[-1]]
                counter[
                    f"{frame['name']} ({Path(frame.get('file', '?')).name}:"
                    f"{frame.get('line', '?')})"
                ] += weight
        lines.append(f"{profile['name']}:")
        lines += [f"  {100 * w / total:5.1f}%  {name}" for name, w in counter.most_common(top)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Profile one relay drain."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_relay", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    args = parser.parse_args(argv)
    services = Services.from_env()
    py_spy = _py_spy()
    args.out.mkdir(parents=True, exist_ok=True)
    svg = args.out / "profile-relay.svg"
    speedscope = args.out / "profile-relay.speedscope.json"
    with scratch_database(services) as url:
        fill_backlog(url, uuid.uuid4(), args.events)
        prefix = new_prefix("p")
        ensure_topics(services.bootstrap_servers, TopicNames(prefix), partitions=PARTITIONS)
        args_ = relay_args(services, url, prefix, "--drain")
        relay = [sys.executable, "-m", ORDERFLOW_MODULE, "relay", *args_]
        for fmt, path in (("flamegraph", svg), ("speedscope", speedscope)):
            if fmt == "speedscope":  # a second drain needs a backlog again
                fill_backlog(url, uuid.uuid4(), args.events)
            subprocess.run(
                [
                    py_spy,
                    "record",
                    "--threads",
                    "--rate",
                    str(args.rate),
                    "--format",
                    fmt,
                    "--output",
                    str(path),
                    "--",
                    *relay,
                ],
                check=True,
            )
    print(hottest(json.loads(speedscope.read_text(encoding="utf-8"))))
    print(f"profile-relay: flame graph {svg}, speedscope {speedscope}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
