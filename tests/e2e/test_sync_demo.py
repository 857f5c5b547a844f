"""``make demo-sync`` (PushOrchestrator, no Kafka): every order lands once in the dropzone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entrypoints import sync_demo


def test_demo_pushes_every_order_exactly_once(
    demo_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sync_demo.main(["--orders", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "demo: approved=4 succeeded=4 failed=0 files=4 duplicates=0"
    # The demo keeps its generated key private to the user.
    key_file = Path(os.environ["ORDERFLOW_INFRA_DIR"]) / "demo-master-key"
    assert key_file.stat().st_mode & 0o077 == 0
    assert key_file.read_text().strip() not in "\n".join(lines)


def test_demo_rejects_a_non_positive_order_count(demo_env: None) -> None:
    with pytest.raises(SystemExit) as exc:
        sync_demo.main(["--orders", "0"])
    assert exc.value.code == 2
