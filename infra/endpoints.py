"""Connection facts for the three backing services: PostgreSQL, Kafka and an SFTP server.

The same shape is used whatever started the services (``python -m infra up``, Docker
Compose, testcontainers or a CI environment): it travels as environment variables
(``export KEY=value`` lines in ``endpoints.env``) or as ``endpoints.json``.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Environment variable names, in the order they are written out.
ENV_KEYS: tuple[str, ...] = (
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "SFTP_HOST",
    "SFTP_PORT",
    "SFTP_USERNAME",
    "SFTP_PRIVATE_KEY_PATH",
    "SFTP_HOST_KEY",
    "SFTP_DROPZONE_DIR",
)

#: Environment variables that describe the SFTP server.
SFTP_ENV_KEYS: tuple[str, ...] = tuple(k for k in ENV_KEYS if k.startswith("SFTP_"))


@dataclass(frozen=True)
class SftpServer:
    """An SFTP server reachable with one key pair and a pinned host key.

    ``dropzone_dir`` is an absolute path *on the server* that the user may write to.
    For the local sshd it is also the path on this machine's disk.
    """

    host: str
    port: int
    username: str
    private_key_pem: str = dataclasses.field(repr=False)
    private_key_path: str
    host_key_line: str
    dropzone_dir: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SftpServer | None:
        """Build from ``SFTP_*`` variables; ``None`` if any is missing or the key is unreadable."""
        if any(not env.get(key) for key in SFTP_ENV_KEYS):
            return None
        key_path = env["SFTP_PRIVATE_KEY_PATH"]
        try:
            pem = Path(key_path).read_text(encoding="ascii")
        except OSError:
            return None
        return cls(
            host=env["SFTP_HOST"],
            port=int(env["SFTP_PORT"]),
            username=env["SFTP_USERNAME"],
            private_key_pem=pem,
            private_key_path=key_path,
            host_key_line=env["SFTP_HOST_KEY"],
            dropzone_dir=env["SFTP_DROPZONE_DIR"],
        )

    def as_env(self) -> dict[str, str]:
        """Return the ``SFTP_*`` environment variables describing this server."""
        return {
            "SFTP_HOST": self.host,
            "SFTP_PORT": str(self.port),
            "SFTP_USERNAME": self.username,
            "SFTP_PRIVATE_KEY_PATH": self.private_key_path,
            "SFTP_HOST_KEY": self.host_key_line,
            "SFTP_DROPZONE_DIR": self.dropzone_dir,
        }


@dataclass(frozen=True)
class Endpoints:
    """Where the backing services listen.

    ``database_url`` is in SQLAlchemy form (``postgresql+psycopg2://...``).
    ``sftp_host_key`` is the server's public host key line (``ssh-ed25519 AAAA...``) to pin.
    """

    database_url: str
    kafka_bootstrap_servers: str
    sftp_host: str
    sftp_port: int
    sftp_username: str
    sftp_private_key_path: str
    sftp_host_key: str
    sftp_dropzone_dir: str

    def as_env(self) -> dict[str, str]:
        """Return the environment variables (see :data:`ENV_KEYS`) describing these endpoints."""
        return {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "SFTP_HOST": self.sftp_host,
            "SFTP_PORT": str(self.sftp_port),
            "SFTP_USERNAME": self.sftp_username,
            "SFTP_PRIVATE_KEY_PATH": self.sftp_private_key_path,
            "SFTP_HOST_KEY": self.sftp_host_key,
            "SFTP_DROPZONE_DIR": self.sftp_dropzone_dir,
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Endpoints | None:
        """Build from environment variables; ``None`` if any of :data:`ENV_KEYS` is missing."""
        if any(not env.get(key) for key in ENV_KEYS):
            return None
        return cls(
            database_url=env["DATABASE_URL"],
            kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
            sftp_host=env["SFTP_HOST"],
            sftp_port=int(env["SFTP_PORT"]),
            sftp_username=env["SFTP_USERNAME"],
            sftp_private_key_path=env["SFTP_PRIVATE_KEY_PATH"],
            sftp_host_key=env["SFTP_HOST_KEY"],
            sftp_dropzone_dir=env["SFTP_DROPZONE_DIR"],
        )

    def sftp_server(self) -> SftpServer:
        """Return the SFTP part, with the private key read from ``sftp_private_key_path``."""
        return SftpServer(
            host=self.sftp_host,
            port=self.sftp_port,
            username=self.sftp_username,
            private_key_pem=Path(self.sftp_private_key_path).read_text(encoding="ascii"),
            private_key_path=self.sftp_private_key_path,
            host_key_line=self.sftp_host_key,
            dropzone_dir=self.sftp_dropzone_dir,
        )

    def env_script(self) -> str:
        """Render ``export KEY=value`` lines (shell-quoted) for ``endpoints.env``."""
        return "".join(
            f"export {key}={shlex.quote(value)}\n" for key, value in self.as_env().items()
        )

    def to_json(self) -> str:
        """Render the environment mapping as pretty JSON for ``endpoints.json``."""
        return json.dumps(self.as_env(), indent=2) + "\n"
