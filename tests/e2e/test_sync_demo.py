"""``make demo-sync`` (PushOrchestrator, no Kafka): every order lands once in the dropzone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.postgres.admin import temporary_database
from entrypoints import sync_demo
from infra.endpoints import SftpServer


@pytest.fixture
def demo_env(
    database_url: str, sftp_server: SftpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    with temporary_database(database_url, prefix="orderflow_t_demo") as url:
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("SFTP_HOST", sftp_server.host)
        monkeypatch.setenv("SFTP_PORT", str(sftp_server.port))
        monkeypatch.setenv("SFTP_USERNAME", sftp_server.username)
        monkeypatch.setenv("SFTP_PRIVATE_KEY_PATH", sftp_server.private_key_path)
        monkeypatch.setenv("SFTP_HOST_KEY", sftp_server.host_key_line)
        monkeypatch.setenv("SFTP_DROPZONE_DIR", sftp_server.dropzone_dir)
        monkeypatch.setenv("ORDERFLOW_INFRA_DIR", str(tmp_path))
        monkeypatch.delenv("ENCRYPTION_MASTER_KEY", raising=False)
        yield


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
