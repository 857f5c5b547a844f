"""The relay and the push worker as child processes, as they run in production.

Each runs as its own ``orderflow relay`` / ``orderflow consume`` process (its own
interpreter and GIL; :data:`ORDERFLOW_MODULE`), logs to a file, is started, waited
for until a log line says it is ready, and stopped with SIGTERM (its graceful
stop) — SIGKILL only if it does not stop. The demo, the benchmarks and the chaos
harness start them with :func:`relay_and_worker` or :class:`ChildProcess`.
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


#: ``python -m`` module of the ``orderflow`` command (works whether or not it is on PATH).
ORDERFLOW_MODULE = "entrypoints.cli"


class ChildProcess:
    """One ``python -m module args...`` child with its log file.

    ``orderflow relay ...`` is ``ChildProcess(name, ORDERFLOW_MODULE, ["relay", ...], log)``.
    """

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


def require_running(children: Sequence[ChildProcess]) -> None:
    """Raise :class:`ServiceProcessError` (with its log's tail) if a child has exited."""
    for child in children:
        if not child.running():
            raise ServiceProcessError(f"{child.name} exited early:\n{child.tail()}")


def relay_and_worker(
    database_url: str,
    bootstrap_servers: str,
    topic_prefix: str,
    logs: Path,
    *,
    partitions: int,
    retry_tiers: int,
    worker_args: Sequence[str] = (),
    log_name: str = "demo",
) -> tuple[ChildProcess, ChildProcess]:
    """The relay and the push worker of one run on ``topic_prefix`` (not started).

    Both skip topic creation (the caller creates the topics); the worker's
    consumer group is ``<topic_prefix>-push``.
    """
    common = [
        "--database-url",
        database_url,
        "--bootstrap-servers",
        bootstrap_servers,
        "--topic-prefix",
        topic_prefix,
        "--partitions",
        str(partitions),
        "--no-ensure-topics",
    ]
    relay = ChildProcess(
        "relay", ORDERFLOW_MODULE, ["relay", *common], logs / f"{log_name}-{topic_prefix}-relay.log"
    )
    worker = ChildProcess(
        "push worker",
        ORDERFLOW_MODULE,
        [
            "consume",
            *common,
            "--group",
            f"{topic_prefix}-push",
            "--retry-tiers",
            str(retry_tiers),
            *worker_args,
        ],
        logs / f"{log_name}-{topic_prefix}-worker.log",
    )
    return relay, worker
