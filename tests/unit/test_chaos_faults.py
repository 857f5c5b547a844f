"""The chaos harness's fault schedule (seeded, replayable) and process-tree lookup."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

from chaos.faults import FAULT_KINDS, descendants
from chaos.harness import _schedule


def test_a_seed_replays_the_same_schedule() -> None:
    assert _schedule(random.Random(42), 120.0) == _schedule(random.Random(42), 120.0)
    assert _schedule(random.Random(42), 120.0) != _schedule(random.Random(43), 120.0)


def test_the_schedule_has_every_fault_once_inside_the_approval_window() -> None:
    schedule = _schedule(random.Random(7), 100.0)
    assert Counter(kind for _, kind in schedule) == Counter(FAULT_KINDS)
    assert Counter(FAULT_KINDS) == {
        "kill_relay": 3,
        "kill_worker": 3,
        "restart_kafka": 1,
        "restart_postgres": 1,
        "sftp_outage": 1,
    }
    moments = [moment for moment, _ in schedule]
    assert moments == sorted(moments)
    assert all(8.0 <= moment <= 85.0 for moment in moments)


def test_descendants_finds_children_and_grandchildren() -> None:
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            grandchild = int(parent.stdout.readline())
            deadline = time.monotonic() + 10
            while grandchild not in descendants(parent.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert grandchild in descendants(parent.pid)
            assert parent.pid not in descendants(parent.pid)
        finally:
            for pid in descendants(parent.pid):
                os.kill(pid, signal.SIGKILL)
            parent.kill()
