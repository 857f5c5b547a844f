"""Render ``bench/results/summary.json`` as the README's "Benchmarks" table.

``python -m bench.readme_table`` prints the markdown; ``--update-readme``
replaces the body of the ``## Benchmarks`` section of README.md with it (the
rest of the README is left as it is).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.stats import flatten

DEFAULT_SUMMARY = Path("bench/results/summary.json")
SECTION = "## Benchmarks"


def _missing(count: object) -> str:
    """``, N results missing`` when PushResults never came (they are not in the percentiles)."""
    if isinstance(count, int | float) and count > 0:
        return f", {int(count):,} results missing"
    return ""


def _num(value: Any, digits: int = 0) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:,.{digits}f}"


def _x(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:,.1f}x"


def _load(machine: Mapping[str, Any]) -> str:
    start, end = machine.get("load_avg_start"), machine.get("load_avg_end")
    if not isinstance(start, int | float) or not isinstance(end, int | float):
        return ""
    return f", load average {start:.1f} at the start and {end:.1f} at the end"


def render(summary: Mapping[str, Any]) -> str:
    """The markdown table (with its heading lines) of one ``summary.json``."""
    s = flatten(summary)
    machine = summary.get("machine", {})
    mode = summary.get("mode", "?")
    backlog = _num(s.get("relay.backlog_events"))
    rss_backlog = f"{_num(s.get('relay.peak_rss_backlog'))} events"
    drained = s.get("relay.peak_rss_events_drained")
    if isinstance(drained, int | float) and drained < s.get("relay.peak_rss_backlog", 0):
        rss_backlog += f" ({_num(drained)} drained in the time allowed)"
    rows: list[tuple[str, str, str, str, str]] = [
        (
            f"relay throughput, {backlog} events of ~1 KB (events/s)",
            _num(s.get("relay.events_per_s")),
            f"{_num(s.get('relay.baseline_events_per_s'))} (textbook relay)",
            _x(s.get("relay.ratio")),
            "≥ 40,000/s and ≥ 40x",
        ),
        (
            f"relay peak RSS, backlog of {rss_backlog} (MiB)",
            _num(s.get("relay.peak_rss_mb_1m")),
            "",
            "",
            "< 200 (1M events)",
        ),
        (
            "relay idle cost (queries/s)",
            _num(s.get("relay.idle_queries_per_s"), 2),
            "",
            "",
            "≤ 1",
        ),
        (
            f"end to end at {_num(s.get('e2e.rate_per_s'))} approvals/s "
            f"(achieved {_num(s.get('e2e.achieved_rate_per_s'))}/s"
            f"{_missing(s.get('e2e.missing_results'))}), p50 / p95 / p99 / max (ms)",
            " / ".join(_num(s.get(f"e2e.{p}_ms"), 1) for p in ("p50", "p95", "p99", "max")),
            "",
            "",
            "p50 ≤ 15, p99 ≤ 60",
        ),
        (
            "CPU per order at that rate, approver + relay + push worker (ms)",
            _num(s.get("e2e.cpu_ms_per_order_total"), 2),
            "",
            "",
            "≤ 1.0",
        ),
        (
            f"highest approval rate held {_num(s.get('e2e_sweep.step_seconds'))} s "
            "(p99 ≤ 250 ms, every result read; approvals/s)",
            _num(s.get("e2e_sweep.max_rate_per_s")),
            "",
            "",
            "≥ 1,000",
        ),
        (
            "consumer, MOCK 50 ms (exports/s per process)",
            _num(s.get("consumer.exports_per_s_50ms")),
            f"{_num(s.get('consumer.baseline_exports_per_s_50ms'))} (sequential)",
            _x(s.get("consumer.ratio_50ms")),
            "≥ 1,500/s and ≥ 100x",
        ),
        (
            "consumer, MOCK 50 ms, 2 processes (exports/s in total)",
            _num(s.get("consumer.exports_per_s_50ms_2proc")),
            "",
            "",
            "",
        ),
        (
            "consumer, MOCK 0 ms (exports/s per process)",
            _num(s.get("consumer.exports_per_s_0ms")),
            "",
            "",
            "≥ 5,000/s",
        ),
        (
            "AES-GCM decrypt of a connector config (µs)",
            _num(s.get("micro.decrypt_us"), 1),
            f"{_num(s.get('micro.decrypt_budget_us'))} (seed budget)",
            "",
            "< 50",
        ),
        (
            "`ConnectorRegistry.get` (µs)",
            _num(s.get("micro.registry_get_us"), 2),
            f"{_num(s.get('micro.registry_get_budget_us'))} (seed budget)",
            "",
            "< 5",
        ),
    ]
    intro = (
        "`make bench` (full) and `make bench-quick` (under 5 minutes) run every benchmark of "
        "issue 6 on the local services, each against a baseline measured in the same run, "
        "and write `bench/results/summary.json`, plots (`latency.png`, `throughput.png`, "
        "`relay-rss.png`) and this table; `make profile-relay` writes a py-spy flame graph "
        "of the relay (`bench/results/profile-relay.svg`). Harness: `bench/`."
    )
    latest = (
        f"Latest figures: `{summary.get('command', 'python -m bench')}` ({mode} mode) on "
        f"{machine.get('cores', '?')} cores / {machine.get('memory_gb', '?')} GB, "
        f"{summary.get('finished_at', '?')}{_load(machine)}. Shared, noisy machine: "
        "compare the ratios "
        "(baseline measured in the same run) more than the absolute figures."
    )
    lines = [
        *textwrap.wrap(intro, 80, break_on_hyphens=False),
        "",
        *textwrap.wrap(latest, 80, break_on_hyphens=False),
        "",
        "| measurement | ours | baseline | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str) -> None:
    """Replace the body of README's ``## Benchmarks`` section (appended if missing)."""
    text = readme.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    body = f"{SECTION}\n\n{table}\n"
    if start is None:
        readme.write_text(text.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n", encoding="utf-8")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    new = "".join(lines[:start]) + body + tail
    if not tail:
        new = new.rstrip("\n") + "\n"
    readme.write_text(new, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table (and optionally write it into README.md)."""
    parser = argparse.ArgumentParser(prog="python -m bench.readme_table", description=__doc__)
    parser.add_argument("--summary", type=Path, default=DEFAULT_SUMMARY)
    parser.add_argument("--update-readme", type=Path, nargs="?", const=Path("README.md"))
    args = parser.parse_args(argv)
    summary = json.loads(args.summary.read_text(encoding="utf-8"))
    table = render(summary)
    print(table, end="")
    if args.update_readme:
        update_readme(args.update_readme, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
