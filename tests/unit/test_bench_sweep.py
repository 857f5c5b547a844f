"""The end-to-end sweep's rule: the highest rate held, stopping at the first step not held."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.e2e_sweep import P99_LIMIT_MS, SweepPlan, step_held, sweep


def _summary(p99: float, achieved: float, missing: int = 0) -> dict[str, Any]:
    return {
        "p50_ms": p99 / 4,
        "p99_ms": p99,
        "achieved_rate_per_s": achieved,
        "missing_results": missing,
    }


def test_a_step_is_held_only_with_every_result_a_bounded_p99_and_the_rate_kept() -> None:
    assert step_held(_summary(100.0, 1000.0), 1000.0) == (True, "held")
    assert step_held(_summary(100.0, 1000.0, missing=1), 1000.0)[0] is False
    assert step_held(_summary(P99_LIMIT_MS + 1, 1000.0), 1000.0)[1].startswith("p99 251 ms")
    held, why = step_held(_summary(100.0, 900.0), 1000.0)
    assert not held and "900/s of 1000/s" in why


def test_the_sweep_reports_the_last_rate_held_and_stops_at_the_first_failure() -> None:
    calls: list[tuple[float, float]] = []
    p99_at = {100.0: 20.0, 200.0: 80.0, 400.0: 900.0, 800.0: 10.0}

    def run_step(rate: float, seconds: float) -> Mapping[str, Any]:
        calls.append((rate, seconds))
        return _summary(p99_at[rate], rate)

    result = sweep(run_step, SweepPlan((100.0, 200.0, 400.0, 800.0), 5.0), progress=lambda _: None)
    assert calls == [(100.0, 5.0), (200.0, 5.0), (400.0, 5.0)]  # 800/s is never tried
    assert result["max_rate_per_s"] == 200.0
    assert [s["held"] for s in result["steps"]] == [True, True, False]
    assert result["step_seconds"] == 5.0


def test_a_sweep_whose_first_step_fails_held_no_rate() -> None:
    result = sweep(lambda r, s: _summary(10.0, r, missing=3), SweepPlan((100.0,), 1.0), print)
    assert result["max_rate_per_s"] == 0.0
    assert result["steps"][0]["why"] == "3 PushResults missing"
