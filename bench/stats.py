"""Pure helpers of the benchmarks: percentiles, rates, time series, the summary's shape."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Keys ``summary.json`` must hold (issue 6, item 3), all numbers.
REQUIRED_KEYS: tuple[str, ...] = (
    "relay.events_per_s",
    "relay.baseline_events_per_s",
    "relay.ratio",
    "relay.peak_rss_mb_1m",
    "relay.idle_queries_per_s",
    "e2e.p50_ms",
    "e2e.p99_ms",
    "e2e.cpu_ms_per_order_total",
    "e2e_sweep.max_rate_per_s",
    "consumer.exports_per_s_50ms",
    "consumer.baseline_exports_per_s_50ms",
    "consumer.ratio_50ms",
    "consumer.exports_per_s_0ms",
    "micro.decrypt_us",
    "micro.registry_get_us",
)

MODES = ("quick", "full")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` in [0, 1]; 0.0 when empty)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p95/p99/max/mean of a latency sample, in milliseconds."""
    if not latencies_ms:
        return {
            "p50_ms": 0.0,
            "p90_ms": 0.0,
            "p95_ms": 0.0,
            "p99_ms": 0.0,
            "max_ms": 0.0,
            "mean_ms": 0.0,
        }
    return {
        "p50_ms": percentile(latencies_ms, 0.50),
        "p90_ms": percentile(latencies_ms, 0.90),
        "p95_ms": percentile(latencies_ms, 0.95),
        "p99_ms": percentile(latencies_ms, 0.99),
        "max_ms": float(max(latencies_ms)),
        "mean_ms": sum(latencies_ms) / len(latencies_ms),
    }


def steady_rate(timestamps: Iterable[float]) -> float:
    """Events per second between the first and the last of ``timestamps`` (seconds).

    The first event only starts the clock, so ``n`` events over ``t`` seconds are
    ``(n - 1) / t``; 0.0 for fewer than two events or a zero span.
    """
    ordered = sorted(timestamps)
    if len(ordered) < 2:
        return 0.0
    span = ordered[-1] - ordered[0]
    return (len(ordered) - 1) / span if span > 0 else 0.0


def per_second(timestamps: Iterable[float], origin: float | None = None) -> list[int]:
    """Count of ``timestamps`` in each whole second after ``origin`` (default: the first)."""
    ordered = sorted(timestamps)
    if not ordered:
        return []
    start = ordered[0] if origin is None else origin
    counts: list[int] = []
    for stamp in ordered:
        index = max(0, int(stamp - start))
        while len(counts) <= index:
            counts.append(0)
        counts[index] += 1
    return counts


def ratio(ours: float, baseline: float) -> float:
    """``ours / baseline`` (0.0 when the baseline measured nothing)."""
    return ours / baseline if baseline > 0 else 0.0


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (dicts only; other values are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def missing_keys(summary: Mapping[str, Any]) -> list[str]:
    """Required keys absent from ``summary`` or not numbers (booleans are not numbers)."""
    flat = flatten(summary)
    problems = []
    for key in REQUIRED_KEYS:
        value = flat.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(key)
    machine = summary.get("machine")
    if not isinstance(machine, Mapping) or not {"cores", "memory_gb"} <= set(machine):
        problems.append("machine")
    if summary.get("mode") not in MODES:
        problems.append("mode")
    return problems


def machine_info() -> dict[str, Any]:
    """Cores and memory of this machine (from ``os`` and ``/proc/meminfo``)."""
    memory_gb = 0.0
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    return {"cores": os.cpu_count() or 0, "memory_gb": memory_gb}


def rss_mb_from_status(status_text: str) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` in MiB from the text of ``/proc/<pid>/status`` (0.0 if absent)."""
    values = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    for line in status_text.splitlines():
        parts = line.split()
        if parts and parts[0] in values and len(parts) >= 2:
            values[parts[0]] = int(parts[1]) / 1024
    return values["VmRSS:"], values["VmHWM:"]
