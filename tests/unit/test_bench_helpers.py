"""The benchmark harness's pure helpers: percentiles, rates, summary shape, README table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.readme_table import render, update_readme
from bench.stats import (
    REQUIRED_KEYS,
    flatten,
    latency_summary,
    missing_keys,
    per_second,
    percentile,
    ratio,
    rss_mb_from_status,
    steady_rate,
)


def full_summary() -> dict[str, Any]:
    summary: dict[str, Any] = {"mode": "quick", "machine": {"cores": 2, "memory_gb": 23.5}}
    for key in REQUIRED_KEYS:
        section, name = key.split(".")
        summary.setdefault(section, {})[name] = 1.5
    summary["command"] = "make bench-quick"
    return summary


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.0) == 1.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) == 0.0
    with pytest.raises(ValueError):
        percentile(values, 1.5)


def test_latency_summary_orders_its_percentiles() -> None:
    summary = latency_summary([5.0, 1.0, 3.0, 2.0, 4.0, 100.0])
    assert summary["p50_ms"] == 3.0
    assert summary["max_ms"] == 100.0
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert latency_summary([])["p99_ms"] == 0.0


def test_steady_rate_starts_the_clock_at_the_first_event() -> None:
    assert steady_rate([10.0, 10.5, 11.0]) == pytest.approx(2.0)
    assert steady_rate([3.0]) == 0.0
    assert steady_rate([4.0, 4.0]) == 0.0


def test_per_second_buckets_from_the_origin() -> None:
    assert per_second([100.0, 100.9, 101.1, 103.5]) == [2, 1, 0, 1]
    assert per_second([100.5], origin=98.0) == [0, 0, 1]
    assert per_second([]) == []


def test_ratio_of_nothing_is_zero() -> None:
    assert ratio(80.0, 2.0) == 40.0
    assert ratio(80.0, 0.0) == 0.0


def test_rss_is_read_from_proc_status() -> None:
    status = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t3\n"
    assert rss_mb_from_status(status) == (100.0, 200.0)
    assert rss_mb_from_status("Name:\tx\n") == (0.0, 0.0)


def test_a_complete_summary_has_every_required_key() -> None:
    summary = full_summary()
    assert missing_keys(summary) == []
    assert "relay.events_per_s" in flatten(summary)


def test_missing_or_non_numeric_keys_are_reported() -> None:
    summary = full_summary()
    del summary["e2e"]["p99_ms"]
    summary["micro"]["decrypt_us"] = "fast"
    summary["relay"]["ratio"] = True
    summary["mode"] = "medium"
    del summary["machine"]
    assert missing_keys(summary) == [
        "relay.ratio",
        "e2e.p99_ms",
        "micro.decrypt_us",
        "machine",
        "mode",
    ]


def test_the_table_shows_figures_targets_and_the_command() -> None:
    summary = full_summary()
    summary["relay"]["events_per_s"] = 41234.5
    summary["relay"]["ratio"] = 42.04
    summary["e2e"]["cpu_ms_per_order_total"] = 0.75
    summary["e2e_sweep"].update(max_rate_per_s=1000.0, step_seconds=60.0)
    table = render(summary)
    assert "`make bench-quick` (quick mode) on 2 cores / 23.5 GB" in " ".join(table.split())
    assert "| 41,234 |" in table or "| 41,235 |" in table
    assert "42.0x" in table
    assert table.count("\n|") == 13  # header, rule and eleven measurements
    assert "| 0.75 |" in table  # CPU per order, approver + relay + worker
    assert "highest approval rate held 60 s" in table and "| 1,000 |" in table
    assert all(len(line) <= 80 for line in table.splitlines() if not line.startswith("|"))
    # Keys it does not know are shown as missing, not as errors.
    assert "| - |" in render({"mode": "full", "machine": {}})


def test_update_readme_replaces_only_the_benchmarks_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nintro\n\n## Benchmarks\n\nold\n\n## After\n\nkept\n")
    update_readme(readme, "| new |\n")
    assert readme.read_text() == (
        "# Title\n\nintro\n\n## Benchmarks\n\n| new |\n\n## After\n\nkept\n"
    )
    last = tmp_path / "LAST.md"
    last.write_text("# T\n\n## Benchmarks\n\nold\n")
    update_readme(last, "| new |\n")
    assert last.read_text() == "# T\n\n## Benchmarks\n\n| new |\n"
    none = tmp_path / "NONE.md"
    none.write_text("# T\n")
    update_readme(none, "| new |\n")
    assert none.read_text() == "# T\n\n## Benchmarks\n\n| new |\n"


def test_drain_rate_is_timed_from_the_first_completed_batch() -> None:
    from bench.relay_bench import drain_rate

    published = [(5.0, 999), (10.0, 1000), (10.5, 1000), (11.0, 1000)]
    # The textbook relay's rows (before ``since``) do not count; the first batch
    # of ours starts the clock: 2000 rows in 1 s after it.
    assert drain_rate(published, since=9.0) == (3000, 2000.0)
    assert drain_rate(published, since=11.0) == (1000, 0.0)
    assert drain_rate([], since=0.0) == (0, 0.0)
