"""``orderflow consume`` options used by operators and the chaos harness.

Parsed by the real command tree (``entrypoints.cli.main``); ``worker_process.run``
is replaced so nothing connects, and the :class:`WorkerConfig` it would run is checked.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from consumer.handling import RetrySettings
from consumer.push_attempt import DEFAULT_LEASE_SECONDS
from consumer.worker import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_PIPELINES
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


def test_every_default(
    parse: Parse, runs: list[tuple[WorkerConfig, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set after the CLI was imported: the defaults are read when the command runs.
    monkeypatch.setenv("DATABASE_URL", DB)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env:9092")
    config = parse([])
    assert config == WorkerConfig(
        bootstrap_servers="env:9092",
        database_url=DB,
        topic_prefix="orderflow",
        group_id="orderflow-push",
        partitions=6,
        ensure_topics=True,
        lease_seconds=DEFAULT_LEASE_SECONDS,
        consumer_extra=None,
        worker=config.worker,
    )
    worker = config.worker
    assert (worker.concurrency, worker.pipelines, worker.batch_size) == (
        DEFAULT_CONCURRENCY,
        DEFAULT_PIPELINES,
        DEFAULT_BATCH_SIZE,
    )
    assert worker.retry == RetrySettings(3, 1.0, 3)
    assert main(["consume"]) == 0
    assert runs.pop()[1] == "INFO"


def test_every_flag_reaches_the_worker_config(
    parse: Parse, runs: list[tuple[WorkerConfig, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://env@127.0.0.1/other")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env:9092")
    argv = [
        *SERVICES,  # the flags win over the environment
        "--topic-prefix",
        "t1",
        "--partitions",
        "3",
        "--no-ensure-topics",
        "--group",
        "g1",
        "--concurrency",
        "16",
        "--pipelines",
        "2",
        "--batch-size",
        "64",
        "--max-retries",
        "5",
        "--retry-delay-base",
        "0.5",
        "--retry-tiers",
        "2",
        "--lease-seconds",
        "45.5",
        "--instance-id",
        "push-1",
        "--log-level",
        "debug",
    ]
    assert main(["consume", *argv]) == 0
    config, log_level = runs.pop()
    assert log_level == "DEBUG"
    assert (config.database_url, config.bootstrap_servers) == (DB, "k:1")
    assert (config.topic_prefix, config.partitions, config.ensure_topics) == ("t1", 3, False)
    assert config.group_id == "g1"
    assert (config.worker.concurrency, config.worker.pipelines) == (16, 2)
    assert config.worker.batch_size == 64
    assert config.retry == RetrySettings(5, 0.5, 2)
    assert config.lease_seconds == 45.5
    assert config.consumer_extra == {"group.instance.id": "push-1"}


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


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--concurrency", "0"], "--concurrency"),
        (["--concurrency", "x"], "--concurrency"),
        (["--pipelines", "0"], "--pipelines"),
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "1.5"], "--batch-size"),
        (["--max-retries", "-1"], "--max-retries"),
        (["--retry-delay-base", "-0.1"], "--retry-delay-base"),
        (["--retry-tiers", "-1"], "--retry-tiers"),
        (["--lease-seconds", "0"], "--lease-seconds"),
        (["--lease-seconds", "soon"], "--lease-seconds"),
        (["--instance-id", ""], "--instance-id"),
        (["--partitions", "0"], "--partitions"),
        (["--log-level", "loud"], "--log-level"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_each_usage_error_exits_2_naming_its_flag(
    extra: list[str],
    flag: str,
    runs: list[tuple[WorkerConfig, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["consume", *SERVICES, *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: orderflow consume [OPTIONS]\n"), err
    assert "orderflow: error: " in err and flag in err, err
    assert not runs


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--bootstrap-servers", "k:1"], "--database-url or set DATABASE_URL"),
        (["--database-url", DB], "--bootstrap-servers or set KAFKA_BOOTSTRAP_SERVERS"),
    ],
)
def test_a_missing_service_is_a_usage_error(
    argv: list[str],
    named: str,
    runs: list[tuple[WorkerConfig, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["consume", *argv])
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
    assert not runs


def test_a_runtime_failure_exits_1_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(config: WorkerConfig, **_: object) -> None:
        raise RuntimeError("broker gone")

    monkeypatch.setattr(worker_process, "run_worker", fail)
    assert main(["consume", *SERVICES]) == 1
    assert capsys.readouterr().err == "error: RuntimeError: broker gone\n"


def test_a_clean_stop_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[WorkerConfig] = []

    def stop_at_once(config: WorkerConfig, **_: object) -> None:
        configs.append(config)

    monkeypatch.setattr(worker_process, "run_worker", stop_at_once)
    assert main(["consume", *SERVICES, "--group", "g2"]) == 0
    assert [c.group_id for c in configs] == ["g2"]


def test_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["consume", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: orderflow consume [OPTIONS]")
    for flag in ("--database-url", "--group", "--concurrency", "--lease-seconds", "--instance-id"):
        assert flag in out
