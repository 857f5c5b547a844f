"""``make demo`` on the real services: relay and worker processes, Kafka, SFTP dropzone."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from adapters.kafka.config import admin_config
from adapters.kafka.topics import TopicNames
from entrypoints import demo

LAST_LINE = re.compile(
    r"demo: approved=(?P<approved>\d+) succeeded=(?P<succeeded>\d+) failed=(?P<failed>\d+)"
    r" dlq=(?P<dlq>\d+) files=(?P<files>\d+) duplicates=(?P<duplicates>\d+)"
    r" p50_ms=(?P<p50>\d+) p99_ms=(?P<p99>\d+)"
)


@pytest.fixture
def prefix(kafka_bootstrap_servers: str) -> Iterator[str]:
    prefix = f"e2e-demo-{uuid.uuid4().hex[:10]}"
    yield prefix
    admin = AdminClient(admin_config(kafka_bootstrap_servers))
    topics = list(TopicNames(prefix).all())
    for future in admin.delete_topics(topics, operation_timeout=10).values():
        with contextlib.suppress(Exception):
            future.result()


def test_demo_exports_every_order_once_through_kafka(
    demo_env: None, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = demo.main(
        ["--orders", "30", "--rate", "50", "--topic-prefix", prefix, "--timeout", "60"]
    )
    out = capsys.readouterr()
    last = out.out.strip().splitlines()[-1]
    match = LAST_LINE.fullmatch(last)
    assert match is not None, last
    fields = {name: int(value) for name, value in match.groupdict().items()}
    assert fields["approved"] == 30
    assert fields["succeeded"] == 30
    assert fields["failed"] == 0
    assert fields["dlq"] == 0
    assert fields["files"] == 30
    assert fields["duplicates"] == 0
    assert 0 < fields["p50"] <= fields["p99"] < 60_000
    assert status == 0
    assert "results 30/30" in out.err  # the progress bar went to stderr


def test_demo_rejects_bad_arguments(demo_env: None) -> None:
    bad = (
        ["--orders", "0"],
        ["--rate", "-1"],
        ["--topic-prefix", "bad prefix"],
        ["--timeout", "0"],
    )
    for argv in bad:
        with pytest.raises(SystemExit) as exc:
            demo.main(argv)
        assert exc.value.code == 2
