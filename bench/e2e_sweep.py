"""The highest approval rate the pipeline holds: end-to-end runs at rising rates.

Each step is one open-loop end-to-end run (``bench.e2e_bench.run_e2e``: its own
scratch database, topics, relay and worker) at a fixed approval rate held for
the step's seconds. A step is *held* when every approved order's PushResult was
read (none missing), the p99 latency is within :data:`P99_LIMIT_MS`, and the
approver kept at least :data:`KEPT_FRACTION` of the rate (an approver that
falls behind would lower the load it claims to apply). The sweep stops at the
first step not held; ``max_rate_per_s`` is the highest rate held (0 when none
was).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Latency bound of a held step (p99, ms).
P99_LIMIT_MS = 250.0
#: Share of the scheduled rate the approver must achieve for a step to count.
KEPT_FRACTION = 0.95


@dataclass(frozen=True)
class SweepPlan:
    """The rates to try, in order, and how long each is held."""

    rates: tuple[float, ...]
    seconds: float


#: ``make bench`` holds each rate 60 s; ``make bench-quick`` takes shorter steps.
SWEEP_PLANS = {
    "quick": SweepPlan((200.0, 500.0, 1000.0, 1500.0, 2000.0), 12.0),
    "full": SweepPlan((200.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0), 60.0),
}


def step_held(summary: Mapping[str, Any], rate: float) -> tuple[bool, str]:
    """Whether one step's end-to-end summary held ``rate``, and if not, why."""
    missing = summary.get("missing_results", 0)
    if missing:
        return False, f"{missing} PushResults missing"
    p99 = float(summary.get("p99_ms", float("inf")))
    if p99 > P99_LIMIT_MS:
        return False, f"p99 {p99:.0f} ms > {P99_LIMIT_MS:.0f} ms"
    achieved = float(summary.get("achieved_rate_per_s", 0.0))
    if achieved < KEPT_FRACTION * rate:
        return False, f"the approver reached {achieved:.0f}/s of {rate:.0f}/s"
    return True, "held"


def sweep(
    run_step: Callable[[float, float], Mapping[str, Any]],
    plan: SweepPlan,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the steps of ``plan`` with ``run_step(rate, seconds)`` until one is not held."""
    steps: list[dict[str, Any]] = []
    best = 0.0
    for rate in plan.rates:
        summary = run_step(rate, plan.seconds)
        held, why = step_held(summary, rate)
        steps.append(
            {
                "rate_per_s": rate,
                "achieved_rate_per_s": summary.get("achieved_rate_per_s"),
                "p50_ms": summary.get("p50_ms"),
                "p99_ms": summary.get("p99_ms"),
                "missing_results": summary.get("missing_results"),
                "machine_busy_fraction": summary.get("machine_busy_fraction"),
                "held": held,
                "why": why,
            }
        )
        progress(f"e2e sweep: {rate:.0f}/s for {plan.seconds:.0f} s: {why}")
        if not held:
            break
        best = rate
    return {"max_rate_per_s": best, "step_seconds": plan.seconds, "steps": steps}


def run_sweep(
    services: Any, mode: str, logs: Path, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """The sweep of ``mode`` on the local services (each step a fresh pipeline)."""
    from bench import e2e_bench

    def run_step(rate: float, seconds: float) -> Mapping[str, Any]:
        result = e2e_bench.run_e2e(
            services, rate, seconds, logs / f"sweep-{rate:.0f}", progress, measure_alone=False
        )
        return result.summary

    return sweep(run_step, SWEEP_PLANS[mode], progress)
