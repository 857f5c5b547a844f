"""The e2e benchmark's pure parts: the approver's report, the hop breakdown, the table row."""

from __future__ import annotations

import uuid

import pytest

from bench.e2e_bench import parse_approver_output
from bench.e2e_hops import CHAIN, hop_breakdown, only
from bench.readme_table import render

A, B, C = (uuid.UUID(int=n) for n in (1, 2, 3))


def test_the_approver_output_gives_commits_lateness_and_cpu() -> None:
    run = parse_approver_output(
        f"{A} 100.5 100.502 0.250\n{B} 101.0 101.004 12.000\n\n# cpu_s 1.5\n"
    )
    assert run.committed == {A: 100.5, B: 101.0}
    assert run.returned == {A: 100.502, B: 101.004}
    assert run.call_ms() == pytest.approx([2.0, 4.0])
    assert run.late_ms == [0.25, 12.0]
    assert run.cpu_s == 1.5


def test_hops_are_consecutive_differences_over_orders_with_both_stamps() -> None:
    stamps = {name: {A: 10.0 + i * 0.001, B: 20.0 + i * 0.002} for i, name in enumerate(CHAIN)}
    del stamps["claimed"][B]  # B misses one stamp: only the hops around it lose B
    stamps["request_marked"] = {A: 10.005}

    hops = hop_breakdown(stamps)

    assert hops["committed->request_produced"]["orders"] == 2
    assert hops["committed->request_produced"]["max_ms"] == pytest.approx(2.0)
    assert hops["request_produced->claimed"]["orders"] == 1
    assert hops["claimed->outcome"]["p50_ms"] == pytest.approx(1.0)
    assert hops["total"]["orders"] == 2
    assert hops["total"]["max_ms"] == pytest.approx(10.0)
    assert hops["request_acked"]["p50_ms"] == pytest.approx(4.0)
    assert hops["result_acked"]["orders"] == 0


def test_only_keeps_the_given_orders() -> None:
    assert only({"read": {A: 1.0, B: 2.0, C: 3.0}}, [A, C]) == {"read": {A: 1.0, C: 3.0}}


def test_the_table_says_when_results_are_missing() -> None:
    summary = {"e2e": {"rate_per_s": 200, "achieved_rate_per_s": 199, "p50_ms": 5.0}}
    assert "missing" not in render(summary)
    summary["e2e"]["missing_results"] = 3
    assert "3 results missing" in render(summary)
