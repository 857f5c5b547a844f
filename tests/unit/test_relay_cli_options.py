"""``orderflow relay`` options: flags to RelayConfig/RelaySettings, usage errors, exit status.

Parsed by the real command tree (``entrypoints.cli.main``); ``relay_process.run``
(or ``run_relay``) is replaced so nothing connects.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from entrypoints import relay_process
from entrypoints.cli import main
from entrypoints.relay_wiring import RelayConfig
from producer.relay_settings import RelayExit, RelaySettings

DB = "postgresql+psycopg2://x@127.0.0.1/db"
SERVICES = ["--database-url", DB, "--bootstrap-servers", "k:1"]


@dataclass
class Run:
    """One ``relay_process.run`` call."""

    config: RelayConfig
    settings: RelaySettings
    log_level: str


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[Run]:
    """Every ``relay_process.run`` call of the test (none connects)."""
    calls: list[Run] = []

    def run(config: RelayConfig, settings: RelaySettings, *, log_level: str) -> int:
        calls.append(Run(config, settings, log_level))
        return 0

    monkeypatch.setattr(relay_process, "run", run)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    return calls


def test_defaults(runs: list[Run], monkeypatch: pytest.MonkeyPatch) -> None:
    # Set after the CLI was imported: the defaults are read when the command runs.
    monkeypatch.setenv("DATABASE_URL", DB)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env:9092")
    assert main(["relay"]) == 0
    [run] = runs
    assert run.config == RelayConfig(
        database_url=DB,
        bootstrap_servers="env:9092",
        topic_prefix="orderflow",
        partitions=6,
        replication_factor=1,
        ensure_topics=True,
    )
    assert run.settings == RelaySettings()
    assert run.log_level == "INFO"


def test_every_flag_reaches_the_config_and_settings(
    runs: list[Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://env@127.0.0.1/other")
    argv = [
        *SERVICES,  # the flags win over the environment
        "--topic-prefix",
        "t1",
        "--partitions",
        "2",
        "--no-ensure-topics",
        "--log-level",
        "warning",
        "--replication-factor",
        "3",
        "--batch-size",
        "50",
        "--max-in-flight",
        "500",
        "--idle-poll-s",
        "0.25",
        "--flush-timeout-s",
        "0",
        "--drain",
    ]
    assert main(["relay", *argv]) == 0
    [run] = runs
    assert run.config == RelayConfig(
        database_url=DB,
        bootstrap_servers="k:1",
        topic_prefix="t1",
        partitions=2,
        replication_factor=3,
        ensure_topics=False,
    )
    assert run.settings == RelaySettings(
        batch_size=50, max_in_flight=500, idle_poll_s=0.25, flush_timeout_s=0.0, drain=True
    )
    assert run.log_level == "WARNING"


@pytest.mark.parametrize("flag", ["--drain", "--once"])
def test_drain_and_its_alias(flag: str, runs: list[Run]) -> None:
    assert main(["relay", *SERVICES, flag]) == 0
    assert main(["relay", *SERVICES]) == 0
    assert [run.settings.drain for run in runs] == [True, False]


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "many"], "--batch-size"),
        (["--max-in-flight", "0"], "--max-in-flight"),
        (["--batch-size", "10", "--max-in-flight", "5"], "--max-in-flight 5"),
        (["--idle-poll-s", "0"], "--idle-poll-s"),
        (["--flush-timeout-s", "-1"], "--flush-timeout-s"),
        (["--replication-factor", "0"], "--replication-factor"),
        (["--partitions", "x"], "--partitions"),
        (["--log-level", "loud"], "--log-level"),
        (["--drain=yes"], "--drain"),
    ],
)
def test_each_usage_error_exits_2_naming_its_flag(
    extra: list[str], flag: str, runs: list[Run], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["relay", *SERVICES, *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    # (click gives an option's misuse, such as a value for a flag, no usage line.)
    assert "orderflow: error: " in err and flag in err, err
    assert not runs


def test_a_runtime_failure_exits_1_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(config: RelayConfig, settings: RelaySettings) -> RelayExit:
        raise RuntimeError("database gone")

    monkeypatch.setattr(relay_process, "run_relay", fail)
    assert main(["relay", *SERVICES]) == 1
    assert capsys.readouterr().err == "relay: error: RuntimeError: database gone\n"


def test_a_clean_stop_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    settings: list[RelaySettings] = []

    def drained(config: RelayConfig, given: RelaySettings) -> RelayExit:
        settings.append(given)
        return RelayExit.DRAINED

    monkeypatch.setattr(relay_process, "run_relay", drained)
    assert main(["relay", *SERVICES, "--once"]) == 0
    assert [s.drain for s in settings] == [True]


def test_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["relay", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: orderflow relay [OPTIONS]")
    assert "--drain, --once" in out
    for flag in ("--database-url", "--replication-factor", "--max-in-flight", "--idle-poll-s"):
        assert flag in out
