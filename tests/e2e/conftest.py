"""The environment ``make demo`` gives the demos, pointed at the test services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.postgres.admin import temporary_database
from infra.endpoints import SftpServer


@pytest.fixture
def demo_env(
    database_url: str,
    kafka_bootstrap_servers: str,
    sftp_server: SftpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    """A scratch database, the local Kafka and SFTP, a private state dir, no master key."""
    with temporary_database(database_url, prefix="orderflow_t_demo") as url:
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap_servers)
        monkeypatch.setenv("SFTP_HOST", sftp_server.host)
        monkeypatch.setenv("SFTP_PORT", str(sftp_server.port))
        monkeypatch.setenv("SFTP_USERNAME", sftp_server.username)
        monkeypatch.setenv("SFTP_PRIVATE_KEY_PATH", sftp_server.private_key_path)
        monkeypatch.setenv("SFTP_HOST_KEY", sftp_server.host_key_line)
        monkeypatch.setenv("SFTP_DROPZONE_DIR", sftp_server.dropzone_dir)
        monkeypatch.setenv("ORDERFLOW_INFRA_DIR", str(tmp_path))
        # Set, then delete: monkeypatch then also removes the key the demo generates,
        # so it does not leak into later tests.
        monkeypatch.setenv("ENCRYPTION_MASTER_KEY", "unset-by-the-test")
        monkeypatch.delenv("ENCRYPTION_MASTER_KEY")
        yield
