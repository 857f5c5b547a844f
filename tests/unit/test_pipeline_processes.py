"""The demo's child-process handling, with tiny Python modules as children."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from entrypoints.pipeline_processes import ChildProcess, ServiceProcessError


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on the children's PYTHONPATH to put throwaway modules in."""
    folder = tmp_path / "mods"
    folder.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(folder))
    return folder


def child(modules: Path, name: str, source: str) -> ChildProcess:
    (modules / f"{name}.py").write_text(textwrap.dedent(source))
    return ChildProcess(name, name, ["--flag"], modules.parent / "logs" / f"{name}.log")


GRACEFUL = """
    import signal, sys, time
    stop = False
    def on_term(*_):
        global stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    print("ready with", sys.argv[1:], flush=True)
    while not stop:
        time.sleep(0.01)
    print("stopped cleanly", flush=True)
"""


def test_waits_for_the_ready_line_and_stops_with_sigterm(modules: Path) -> None:
    process = child(modules, "graceful", GRACEFUL).start()
    process.wait_for_log(r"ready with \['--flag'\]", timeout_s=30)
    assert process.running()
    assert process.stop(timeout_s=30) == 0
    assert "stopped cleanly" in process.tail()


def test_a_child_that_dies_before_it_is_ready_is_reported_with_its_log(modules: Path) -> None:
    process = child(modules, "dying", "import sys\nprint('bad config: port')\nsys.exit(3)\n")
    process.start()
    with pytest.raises(ServiceProcessError, match=r"(?s)exited with status 3.*bad config: port"):
        process.wait_for_log("never printed", timeout_s=30)


def test_a_child_that_is_not_ready_in_time_is_reported(modules: Path) -> None:
    process = child(modules, "silent", "import time\ntime.sleep(60)\n")
    with process, pytest.raises(ServiceProcessError, match="not ready within 0 s"):
        process.wait_for_log("ready", timeout_s=0.2)
    assert not process.running()  # leaving the block stopped it


def test_a_child_ignoring_sigterm_is_killed(modules: Path) -> None:
    source = GRACEFUL.replace(
        "signal.signal(signal.SIGTERM, on_term)", "signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    )
    process = child(modules, "stubborn", source).start()
    process.wait_for_log("ready", timeout_s=30)
    assert process.stop(timeout_s=0.3) is None
    assert not process.running()


def test_using_a_child_before_start_is_an_error(modules: Path) -> None:
    with pytest.raises(ServiceProcessError, match="was not started"):
        child(modules, "never", "").running()


def test_kill_sends_sigkill_without_a_graceful_stop(modules: Path) -> None:
    process = child(modules, "graceful_kill", GRACEFUL).start()
    process.wait_for_log("ready with", 10)
    assert process.kill(10) == -9  # SIGKILL: the SIGTERM handler never ran
    assert "stopped cleanly" not in process.log_path.read_text()
    assert not process.running()
