"""``orderflow consume`` options used by operators and the chaos harness."""

from __future__ import annotations

import pytest

from consumer.push_attempt import DEFAULT_LEASE_SECONDS
from entrypoints.worker_process import config_from_args, parse_args

SERVICES = ["--database-url", "postgresql+psycopg2://x@127.0.0.1/db", "--bootstrap-servers", "k:1"]


def test_defaults_keep_the_lease_and_dynamic_membership() -> None:
    config = config_from_args(parse_args(SERVICES))
    assert config.lease_seconds == DEFAULT_LEASE_SECONDS
    assert config.consumer_extra is None


def test_lease_seconds_and_instance_id_reach_the_worker_config() -> None:
    args = parse_args([*SERVICES, "--lease-seconds", "30", "--instance-id", "push-0"])
    config = config_from_args(args)
    assert config.lease_seconds == 30.0
    assert config.consumer_extra == {"group.instance.id": "push-0"}


@pytest.mark.parametrize(
    "extra", [["--lease-seconds", "0"], ["--lease-seconds", "-1"], ["--instance-id", " "]]
)
def test_bad_values_are_usage_errors(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*SERVICES, *extra])
    assert exit_info.value.code == 2
    assert "must" in capsys.readouterr().err
