"""``python -m bench``: run every benchmark of issue 6, write summary.json and the plots.

``--mode quick`` (``make bench-quick``, under 5 minutes) uses smaller backlogs
and shorter windows than ``--mode full`` (``make bench``); the summary says
which, and what was measured where it differs (``relay.peak_rss_backlog``).
A phase that fails is reported and the others still run; the exit status is
non-zero then, or when a required key is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import plots
from bench.stats import machine_info, missing_keys, ratio


@dataclass(frozen=True)
class Plan:
    """Sizes of one mode."""

    relay_events: int
    textbook_rows: int
    textbook_seconds: float
    memory_events: int
    #: Longest the memory drain may run before the relay is stopped (None: to the end).
    memory_max_s: float | None
    idle_s: float
    e2e_rate: float
    e2e_seconds: float
    consumer_records: int
    consumer_window_s: float
    baseline_window_s: float


PLANS = {
    "quick": Plan(20_000, 2_000, 8.0, 200_000, 20.0, 10.0, 200.0, 20.0, 8_000, 6.0, 6.0),
    "full": Plan(100_000, 2_000, 20.0, 1_000_000, None, 30.0, 200.0, 60.0, 60_000, 30.0, 20.0),
}


def _log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


class Run:
    """The state of one benchmark run: summary, series for the plots, failures."""

    def __init__(self, mode: str, out: Path, command: str) -> None:
        self.mode = mode
        self.plan = PLANS[mode]
        self.out = out
        self.logs = out / "logs"
        self.summary: dict[str, Any] = {
            "mode": mode,
            "machine": {**machine_info(), "load_avg_start": round(os.getloadavg()[0], 2)},
            "command": command,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "relay": {},
            "e2e": {},
            "e2e_sweep": {},
            "consumer": {},
            "micro": {},
            "notes": {},
        }
        self.series: dict[str, dict[str, list[float]]] = {}
        self.latencies: list[float] = []
        self.rss: list[tuple[float, float]] = []
        self.failures: list[str] = []

    def phase(self, name: str, body: Callable[[], None]) -> None:
        started = time.monotonic()
        _log(f"{name} ...")
        try:
            body()
        except Exception as exc:
            self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            self.summary["notes"][f"{name}_error"] = f"{type(exc).__name__}: {exc}"
            _log(f"{name} FAILED: {exc}")
            traceback.print_exc()
        self.summary["notes"][f"{name}_seconds"] = round(time.monotonic() - started, 1)
        self.write()

    def write(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "summary.json"
        path.write_text(json.dumps(self.summary, indent=2, sort_keys=False) + "\n", "utf-8")
        return path


def _relay(run: Run) -> None:
    from bench import relay_bench
    from bench.workload import Services

    services = Services.from_env()
    plan = run.plan
    figures, drain = relay_bench.throughput(
        services, plan.relay_events, plan.textbook_rows, plan.textbook_seconds, run.logs, _log
    )
    relay = run.summary["relay"]
    relay.update(figures)
    relay["ratio"] = ratio(relay["events_per_s"], relay["baseline_events_per_s"])
    run.series["relay drain (events published per second)"] = {
        f"ours, backlog {plan.relay_events}": plots.expand(drain.published)
    }


def _memory(run: Run) -> None:
    from bench import relay_bench
    from bench.workload import Services

    plan = run.plan
    result = relay_bench.memory(
        Services.from_env(), plan.memory_events, run.logs, _log, max_s=plan.memory_max_s
    )
    relay = run.summary["relay"]
    relay["peak_rss_mb_1m"] = result.run.peak_rss_mb
    relay["peak_rss_backlog"] = plan.memory_events
    relay["peak_rss_events_drained"] = result.events
    relay["events_per_s_large_backlog"] = result.events_per_s
    if plan.memory_events != 1_000_000:
        run.summary["notes"]["peak_rss_mb_1m"] = (
            f"{run.mode} mode: measured on a backlog of {plan.memory_events} events, not 1M"
        )
    if result.events < plan.memory_events:
        run.summary["notes"]["peak_rss_drain"] = (
            f"stopped after {plan.memory_max_s:.0f} s with {result.events} of "
            f"{plan.memory_events} events published"
        )
    run.rss = result.run.rss_samples
    run.series.setdefault("relay drain (events published per second)", {})[
        f"ours, backlog {plan.memory_events}"
    ] = plots.expand(result.published)


def _idle(run: Run) -> None:
    from bench import relay_bench
    from bench.workload import Services

    figures = relay_bench.idle_cost(Services.from_env(), run.plan.idle_s, run.logs)
    run.summary["relay"].update(figures)
    run.summary["notes"]["idle_method"] = (
        "statements of the relay's own session counted by PostgreSQL: distinct query_start "
        "values of its backend in pg_stat_activity, sampled every 5 ms over the window "
        "(idle_queries_per_s); idle_db_transactions_per_s is pg_stat_database xact_commit + "
        "xact_rollback of its scratch database, an upper bound that also counts autovacuum"
    )
    _log(
        f"relay: idle {figures['idle_queries_per_s']:.2f} queries/s (whole database "
        f"{figures['idle_db_transactions_per_s']:.2f} transactions/s)"
    )


def _e2e(run: Run) -> None:
    from bench import e2e_bench
    from bench.workload import Services, ensure_master_key

    ensure_master_key()
    result = e2e_bench.run_e2e(
        Services.from_env(), run.plan.e2e_rate, run.plan.e2e_seconds, run.logs, _log
    )
    run.summary["e2e"].update(result.summary)
    run.latencies = result.latencies_ms
    run.series[E2E_PANEL] = {
        "approvals committed": result.approved_at,
        "PushResults read": result.result_at,
    }


def _sweep(run: Run) -> None:
    from bench import e2e_sweep
    from bench.workload import Services, ensure_master_key

    ensure_master_key()
    result = e2e_sweep.run_sweep(Services.from_env(), run.mode, run.logs, _log)
    run.summary["e2e_sweep"].update(result)


def _consumer(run: Run, worker_args: list[str]) -> None:
    from bench import consumer_bench
    from bench.workload import Services, ensure_master_key

    ensure_master_key()
    services = Services.from_env()
    plan = run.plan
    topic = consumer_bench.prefill(services, plan.consumer_records, _log)
    consumer = run.summary["consumer"]
    panel = run.series.setdefault("consumer (exports per second)", {})

    worker, sequential = consumer_bench.WORKER_COMMAND, consumer_bench.SEQUENTIAL_COMMAND

    def one(
        name: str, command: tuple[str, ...], processes: int, latency: float, window: float
    ) -> float:
        extra = worker_args if command == worker else []
        result = consumer_bench.run_consumers(
            services,
            topic,
            name=name,
            command=command,
            processes=processes,
            latency_ms=latency,
            window_s=window,
            logs=run.logs,
            extra_args=extra,
            progress=_log,
        )
        panel[f"{name} ({processes} proc, MOCK {latency:g} ms)"] = result.success_at
        return result.exports_per_s

    consumer["records"] = plan.consumer_records
    window = plan.consumer_window_s
    consumer["exports_per_s_50ms"] = one("worker50", worker, 1, 50, window)
    consumer["baseline_exports_per_s_50ms"] = one(
        "sequential50", sequential, 1, 50, plan.baseline_window_s
    )
    consumer["ratio_50ms"] = ratio(
        consumer["exports_per_s_50ms"], consumer["baseline_exports_per_s_50ms"]
    )
    consumer["exports_per_s_0ms"] = one("worker0", worker, 1, 0, plan.consumer_window_s)
    total = one("worker50x2", worker, 2, 50, plan.consumer_window_s)
    consumer["exports_per_s_50ms_2proc"] = total
    consumer["exports_per_s_50ms_2proc_per_process"] = total / 2
    run.summary["notes"]["consumer_worker_args"] = " ".join(worker_args) or "(worker defaults)"


def _micro(run: Run) -> None:
    from bench.micro import run_micro

    run.summary["micro"].update(run_micro())
    _log(
        f"micro: decrypt {run.summary['micro']['decrypt_us']:.1f} µs, "
        f"registry get {run.summary['micro']['registry_get_us']:.2f} µs"
    )


def _plots(run: Run) -> None:
    title = f"OrderFlow bench ({run.mode} mode, {run.summary['machine']['cores']} cores)"
    made = [
        plots.latency_plot(run.latencies, f"{title}: end-to-end latency", run.out / "latency.png"),
        plots.throughput_plot(
            run.series, f"{title}: throughput", run.out / "throughput.png", [E2E_PANEL]
        ),
    ]
    if run.rss:
        made.append(plots.rss_plot(run.rss, f"{title}: relay RSS", run.out / "relay-rss.png"))
    run.summary["plots"] = [path.name for path in made]


E2E_PANEL = "end to end (per second)"
PHASES = ("micro", "relay", "memory", "idle", "e2e", "sweep", "consumer")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 if every phase ran and the summary has every required key."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--mode", choices=sorted(PLANS), default="quick")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--only", nargs="*", choices=PHASES, help="run only these phases")
    parser.add_argument("--command", help="how this run was started (shown with the figures)")
    parser.add_argument("--worker-args", default="", help="extra flags for orderflow consume")
    parser.add_argument(
        "--update-readme",
        type=Path,
        nargs="?",
        const=Path("README.md"),
        help="write the figures into README's Benchmarks section",
    )
    args = parser.parse_args(argv)
    command = args.command or f"python -m bench --mode {args.mode}"
    run = Run(args.mode, args.out, command)
    started = time.monotonic()
    phases: dict[str, Callable[[], None]] = {
        "micro": lambda: _micro(run),
        "relay": lambda: _relay(run),
        "memory": lambda: _memory(run),
        "idle": lambda: _idle(run),
        "e2e": lambda: _e2e(run),
        "sweep": lambda: _sweep(run),
        "consumer": lambda: _consumer(run, args.worker_args.split()),
    }
    for name in args.only or PHASES:
        run.phase(name, phases[name])
    run.phase("plots", lambda: _plots(run))
    run.summary["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    run.summary["machine"]["load_avg_end"] = round(os.getloadavg()[0], 2)
    run.summary["notes"]["total_seconds"] = round(time.monotonic() - started, 1)
    path = run.write()
    from bench.readme_table import render, update_readme

    table = render(run.summary)
    print(table, end="")
    _log(f"wrote {path} and {', '.join(run.summary.get('plots', []))} in {run.out}")
    missing = missing_keys(run.summary)
    if missing:
        _log(f"missing or non-numeric keys: {', '.join(missing)}")
    for failure in run.failures:
        _log(f"failed: {failure}")
    if args.update_readme and not run.failures and not missing:
        update_readme(args.update_readme, table)
        _log(f"updated the Benchmarks section of {args.update_readme}")
    return 1 if run.failures or (missing and not args.only) else 0


if __name__ == "__main__":
    sys.exit(main())
