"""Child processes of the demo: the relay and the push worker, as they run in production.

Each runs as its own ``python -m ...`` process (its own interpreter and GIL),
logs to a file, is started, waited for until a log line says it is ready, and
stopped with SIGTERM (its graceful stop) — SIGKILL only if it does not stop.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

#: Lines of a child's log shown when it fails.
TAIL_LINES = 15


class ServiceProcessError(RuntimeError):
    """A child process exited early or did not become ready in time."""


class ChildProcess:
    """One ``python -m module args...`` child with its log file."""

    def __init__(self, name: str, module: str, args: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", module, *args]
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildProcess:
        """Start the process; its stdout and stderr go to the log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
            )
        return self

    @property
    def pid(self) -> int:
        """The child's process id (after :meth:`start`)."""
        return self._require().pid

    def running(self) -> bool:
        """Tell whether the child is still running."""
        return self._require().poll() is None

    def wait_for_log(self, pattern: str, timeout_s: float) -> None:
        """Wait until a line of the log matches ``pattern``; raise if the child dies first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if regex.search(self.log_path.read_text(encoding="utf-8", errors="replace")):
                return
            if not self.running():
                raise ServiceProcessError(
                    f"{self.name} exited with status {self._require().returncode} "
                    f"before it was ready:\n{self.tail()}"
                )
            time.sleep(0.05)
        raise ServiceProcessError(
            f"{self.name} not ready within {timeout_s:.0f} s (no log line /{pattern}/):\n"
            f"{self.tail()}"
        )

    def stop(self, timeout_s: float) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; return the exit status.

        Returns ``None`` if the child had to be killed.
        """
        process = self._process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return None
        return process.returncode

    def kill(self, timeout_s: float = 30.0) -> int | None:
        """SIGKILL the child (no graceful stop) and reap it; return its exit status.

        Returns ``None`` if it was not reaped within ``timeout_s``.
        """
        process = self._require()
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines of the child's log, indented."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "  (no log)"
        return "\n".join(f"  {line}" for line in text.splitlines()[-lines:])

    def __enter__(self) -> ChildProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(30.0)

    def _require(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ServiceProcessError(f"{self.name} was not started")
        return self._process
