"""``orderflow consume`` options used by operators and the chaos harness.

Parsed by the real command tree (``entrypoints.cli.main``); ``worker_process.run``
is replaced so nothing connects, and the :class:`WorkerConfig` it would run is checked.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from consumer.push_attempt import DEFAULT_LEASE_SECONDS
from entrypoints import worker_process
from entrypoints.cli import main
from entrypoints.worker_process import WorkerConfig

DB = "postgresql+psycopg2://x@127.0.0.1/db"
SERVICES = ["--database-url", DB, "--bootstrap-servers", "k:1"]

Parse = Callable[[list[str]], WorkerConfig]


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[WorkerConfig, str]]:
    """The (config, log level) of every ``worker_process.run`` call (none connects)."""
    calls: list[tuple[WorkerConfig, str]] = []

    def run(config: WorkerConfig, *, log_level: str) -> int:
        calls.append((config, log_level))
        return 0

    monkeypatch.setattr(worker_process, "run", run)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    return calls


@pytest.fixture
def parse(runs: list[tuple[WorkerConfig, str]]) -> Parse:
    """``orderflow consume ARGV``'s WorkerConfig (the command must exit 0)."""

    def parse(argv: list[str]) -> WorkerConfig:
        assert main(["consume", *argv]) == 0
        assert len(runs) == 1
        return runs.pop()[0]

    return parse


def test_defaults_keep_the_lease_and_dynamic_membership(parse: Parse) -> None:
    config = parse(SERVICES)
    assert config.lease_seconds == DEFAULT_LEASE_SECONDS
    assert config.consumer_extra is None


def test_lease_seconds_and_instance_id_reach_the_worker_config(parse: Parse) -> None:
    config = parse([*SERVICES, "--lease-seconds", "30", "--instance-id", "push-0"])
    assert config.lease_seconds == 30.0
    assert config.consumer_extra == {"group.instance.id": "push-0"}


@pytest.mark.parametrize(
    "extra", [["--lease-seconds", "0"], ["--lease-seconds", "-1"], ["--instance-id", " "]]
)
def test_bad_values_are_usage_errors(
    extra: list[str],
    runs: list[tuple[WorkerConfig, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["consume", *SERVICES, *extra])
    assert exit_info.value.code == 2
    assert "must" in capsys.readouterr().err
    assert not runs
