"""Endpoints for ``docker-compose.yml`` (for machines that have Docker).

``python -m infra compose-env`` prepares what the compose file mounts (the SFTP host key,
the client public key, the dropzone dir) and prints the matching ``export`` lines.
"""

from __future__ import annotations

import os
from pathlib import Path

from infra.endpoints import Endpoints
from infra.layout import default_state_dir
from infra.services.sftp import keygen

#: Published ports, as defaulted in docker-compose.yml.
DEFAULT_PORTS = {
    "ORDERFLOW_PG_PORT": 15432,
    "ORDERFLOW_KAFKA_PORT": 19092,
    "ORDERFLOW_SFTP_PORT": 12222,
}

#: SFTP user and (chrooted) dropzone path inside the atmoz/sftp container.
COMPOSE_SFTP_USER = "orderflow"
COMPOSE_DROPZONE = "/dropzone"


def _port(name: str) -> int:
    return int(os.environ.get(name, DEFAULT_PORTS[name]))


def compose_endpoints(state_dir: Path | None = None) -> Endpoints:
    """Create the compose mounts under ``<state>/compose`` and return the endpoints."""
    state = (state_dir or default_state_dir()).resolve()
    compose, keys = state / "compose", state / "keys"
    compose.mkdir(parents=True, exist_ok=True)
    keys.mkdir(parents=True, exist_ok=True)
    os.chmod(keys, 0o700)
    client_key = keys / "sftp_client_ed25519"
    host_key = compose / "ssh_host_ed25519_key"
    keygen(client_key, "orderflow-infra-client")
    keygen(host_key, "orderflow-compose-host")
    dropzone = compose / "dropzone"
    dropzone.mkdir(exist_ok=True)
    os.chmod(dropzone, 0o777)  # noqa: S103 - the container's uid 1001 writes here
    host_pub = host_key.with_suffix(".pub").read_text().split()
    return Endpoints(
        database_url=f"postgresql+psycopg2://postgres@127.0.0.1:{_port('ORDERFLOW_PG_PORT')}/orderflow",
        kafka_bootstrap_servers=f"127.0.0.1:{_port('ORDERFLOW_KAFKA_PORT')}",
        sftp_host="127.0.0.1",
        sftp_port=_port("ORDERFLOW_SFTP_PORT"),
        sftp_username=COMPOSE_SFTP_USER,
        sftp_private_key_path=str(client_key),
        sftp_host_key=f"{host_pub[0]} {host_pub[1]}",
        sftp_dropzone_dir=COMPOSE_DROPZONE,
    )
