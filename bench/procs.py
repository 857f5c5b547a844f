"""Child processes measured from the outside: wall time and resident memory from ``/proc``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.stats import rss_mb_from_status


@dataclass
class MeasuredRun:
    """How one child process went."""

    returncode: int
    wall_s: float
    #: Peak resident set size (the largest ``VmHWM`` sampled), MiB.
    peak_rss_mb: float
    #: ``(seconds since start, VmRSS MiB)`` samples.
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    log_path: Path | None = None

    def tail(self, lines: int = 15) -> str:
        """The last lines of the child's log."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def python_module(module: str, *args: str) -> list[str]:
    """``[this interpreter, -m, module, *args]``."""
    return [sys.executable, "-m", module, *args]


def read_rss(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of ``pid`` in MiB; zeros once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            return rss_mb_from_status(status.read())
    except OSError:
        return 0.0, 0.0


def run_measured(
    argv: Sequence[str],
    log_path: Path,
    *,
    timeout_s: float,
    sample_s: float = 0.05,
    stop_after_s: float | None = None,
) -> MeasuredRun:
    """Run ``argv`` to completion, sampling its RSS; kill it after ``timeout_s``.

    With ``stop_after_s`` it gets SIGTERM (its graceful stop) at that time.

    The peak is the process's own high-water mark (``VmHWM``, monotonic, so the
    last sample covers all but the last ``sample_s``). Not ``ru_maxrss`` from
    ``wait4``: Linux carries the forking parent's peak over the ``exec`` into
    it, so it would report the harness's memory whenever that is larger.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT)
    samples: list[tuple[float, float]] = []
    peak = 0.0
    status = 0
    terminated = False
    try:
        while True:
            pid, status = os.waitpid(process.pid, os.WNOHANG)
            now = time.monotonic()
            if pid == process.pid:
                break
            rss, hwm = read_rss(process.pid)
            if rss:
                samples.append((now - started, rss))
                peak = max(peak, hwm, rss)
            if stop_after_s is not None and not terminated and now - started > stop_after_s:
                process.send_signal(signal.SIGTERM)
                terminated = True
            if now - started > timeout_s:
                process.kill()
                _, status = os.waitpid(process.pid, 0)
                break
            time.sleep(sample_s)
    except BaseException:
        # Interrupted (Ctrl-C, an error): leave no relay running behind.
        process.kill()
        os.waitpid(process.pid, 0)
        process.returncode = -9
        raise
    wall = time.monotonic() - started
    returncode = os.waitstatus_to_exitcode(status)
    process.returncode = returncode  # reaped here, not by Popen
    return MeasuredRun(returncode, wall, peak, samples, log_path)
