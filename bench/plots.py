"""PNG plots of a benchmark run (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench.stats import per_second, percentile


def latency_plot(latencies_ms: Sequence[float], title: str, path: Path) -> Path:
    """Histogram and CDF of end-to-end latencies, with p50/p95/p99 marked."""
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(12, 4.5))
    if latencies_ms:
        hist.hist(latencies_ms, bins=60, color="#3a7abf")
        hist.set_yscale("log")
        ordered = sorted(latencies_ms)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        cdf.plot(ordered, fractions, color="#3a7abf")
        cdf.set_xscale("log")
        for fraction, colour in ((0.50, "green"), (0.95, "orange"), (0.99, "red")):
            value = percentile(latencies_ms, fraction)
            label = f"p{round(fraction * 100)} {value:.1f} ms"
            for axis in (hist, cdf):
                axis.axvline(value, color=colour, linestyle="--", linewidth=1, label=label)
        cdf.legend(loc="lower right")
    hist.set_xlabel("approval commit -> PushResult read (ms)")
    hist.set_ylabel("orders (log)")
    hist.set_title("latency distribution")
    cdf.set_xlabel("latency (ms, log)")
    cdf.set_ylabel("fraction of orders")
    cdf.set_title("CDF")
    cdf.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def throughput_plot(
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    title: str,
    path: Path,
    shared_origin: Collection[str] = (),
) -> Path:
    """One panel per measurement: events per second over time for each named series.

    ``panels`` maps a panel title to ``{series label: event timestamps (s)}``.
    Each series starts at its own first event, except in the panels named in
    ``shared_origin``, whose series share the panel's earliest event as zero.
    """
    shown = {name: series for name, series in panels.items() if any(series.values())}
    fig, axes = plt.subplots(len(shown) or 1, 1, figsize=(12, 3.2 * max(1, len(shown))))
    axis_list = list(axes) if len(shown) > 1 else [axes]
    for axis, (name, series) in zip(axis_list, shown.items(), strict=False):
        origin = min(min(stamps) for stamps in series.values() if stamps)
        for label, stamps in series.items():
            counts = per_second(stamps, origin if name in shared_origin else None)
            axis.step(range(len(counts)), counts, where="post", label=label)
        axis.set_title(name)
        axis.set_xlabel("seconds" if name in shared_origin else "seconds since the series' start")
        axis.set_ylabel("per second")
        axis.grid(True, alpha=0.3)
        axis.legend(loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def rss_plot(samples: Sequence[tuple[float, float]], title: str, path: Path) -> Path:
    """Resident memory of the relay over its drain."""
    fig, axis = plt.subplots(figsize=(12, 3.5))
    if samples:
        axis.plot([t for t, _ in samples], [rss for _, rss in samples], color="#bf3a3a")
    axis.set_xlabel("seconds since start")
    axis.set_ylabel("RSS (MiB)")
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def expand(published: Sequence[tuple[float, int]]) -> list[float]:
    """``[(time, rows)]`` -> one timestamp per row (for :func:`throughput_plot`)."""
    return [stamp for stamp, rows in published for _ in range(rows)]
