"""Where the local services keep their files, and which ports they use.

Everything lives in one *state dir*: ``$ORDERFLOW_INFRA_DIR`` or ``<repo root>/.infra``::

    <state>/ports.json              ports picked at first start, reused afterwards
    <state>/logs/                   postgres.log, kafka.log, kafka.out, sshd.log
    <state>/kafka/                  server.properties, log4j2.properties, data/, kafka.pid
    <state>/keys/                   SFTP client key pair (the tests' identity)
    <state>/endpoints.env|json      written by ``up``
    <svc>/postgres/data             PGDATA            (owned by the service user)
    <svc>/sftp/                     sshd config, host key, authorized_keys, dropzone/

``<svc>`` is ``<state>`` unless we are root and the service user cannot traverse the state
dir (say, a checkout under ``/root``); then it is ``/var/tmp/orderflow-infra-<hash>``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from infra._proc import ServiceUser, can_traverse, pick_free_port, port_is_free

#: Names of the port slots stored in ``ports.json``.
PORT_NAMES: tuple[str, ...] = ("postgres", "kafka", "kafka_controller", "sftp")

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_state_dir() -> Path:
    """Return ``$ORDERFLOW_INFRA_DIR`` or ``<repo root>/.infra`` (absolute)."""
    configured = os.environ.get("ORDERFLOW_INFRA_DIR")
    return Path(configured).expanduser().resolve() if configured else REPO_ROOT / ".infra"


@dataclass(frozen=True)
class Layout:
    """Paths of one local infrastructure instance."""

    state: Path
    svc: Path

    @classmethod
    def for_state(cls, state: Path, user: ServiceUser) -> Layout:
        """Choose the service-owned base dir for ``state`` and ``user``."""
        state = state.resolve()
        if can_traverse(user, state):
            return cls(state=state, svc=state)
        digest = hashlib.sha1(str(state).encode(), usedforsecurity=False).hexdigest()[:12]
        return cls(state=state, svc=Path("/var/tmp") / f"orderflow-infra-{digest}")  # noqa: S108

    # --- common ---
    @property
    def logs(self) -> Path:
        """Directory holding every service log."""
        return self.state / "logs"

    @property
    def lock(self) -> Path:
        """Lock file serialising ``up``/``down`` on this state dir."""
        return self.state / ".lock"

    @property
    def ports_file(self) -> Path:
        """JSON map of port slot -> port."""
        return self.state / "ports.json"

    @property
    def endpoints_env(self) -> Path:
        """``export KEY=value`` lines for shells and Make."""
        return self.state / "endpoints.env"

    @property
    def endpoints_json(self) -> Path:
        """The same endpoints as JSON."""
        return self.state / "endpoints.json"

    # --- postgres ---
    @property
    def pg_root(self) -> Path:
        """Service-owned PostgreSQL directory."""
        return self.svc / "postgres"

    @property
    def pg_data(self) -> Path:
        """PGDATA."""
        return self.pg_root / "data"

    @property
    def pg_socket_dir(self) -> Path:
        """Unix socket directory (kept short: socket paths are limited to ~100 bytes)."""
        preferred = self.pg_root / "run"
        if len(str(preferred)) <= 80:
            return preferred
        digest = hashlib.sha1(str(self.state).encode(), usedforsecurity=False).hexdigest()[:12]
        return Path("/tmp") / f"orderflow-pg-{digest}"  # noqa: S108 - a socket dir, not data

    @property
    def pg_log(self) -> Path:
        """PostgreSQL server log."""
        return self.logs / "postgres.log"

    # --- kafka ---
    @property
    def kafka_root(self) -> Path:
        """Kafka config and pid directory."""
        return self.state / "kafka"

    @property
    def kafka_data(self) -> Path:
        """Kafka ``log.dirs`` (also the KRaft metadata log)."""
        return self.kafka_root / "data"

    @property
    def kafka_pid(self) -> Path:
        """Pid file of the broker JVM."""
        return self.kafka_root / "kafka.pid"

    @property
    def kafka_log(self) -> Path:
        """Broker log written by log4j2."""
        return self.logs / "kafka.log"

    @property
    def kafka_out(self) -> Path:
        """The JVM's stdout/stderr (startup failures before log4j is up)."""
        return self.logs / "kafka.out"

    # --- sftp ---
    @property
    def sftp_root(self) -> Path:
        """Service-owned sshd directory."""
        return self.svc / "sftp"

    @property
    def sftp_dropzone(self) -> Path:
        """Directory the SFTP user uploads into."""
        return self.sftp_root / "dropzone"

    @property
    def sshd_pid(self) -> Path:
        """Pid file that we write for sshd (sshd's own PidFile is in ``sftp_root``)."""
        return self.state / "sshd.pid"

    @property
    def sshd_log(self) -> Path:
        """Log of sshd (its ``-e`` output)."""
        return self.logs / "sshd.log"

    @property
    def keys(self) -> Path:
        """Client key directory, owned by the caller."""
        return self.state / "keys"

    @property
    def client_key(self) -> Path:
        """Client ed25519 private key (OpenSSH format)."""
        return self.keys / "sftp_client_ed25519"

    # --- ports ---
    def read_ports(self) -> dict[str, int]:
        """Return the persisted ports (possibly empty)."""
        try:
            raw = json.loads(self.ports_file.read_text())
        except (OSError, ValueError):
            return {}
        return {k: int(v) for k, v in raw.items() if k in PORT_NAMES}

    def ensure_ports(self, running: dict[str, bool]) -> dict[str, int]:
        """Return a port for every slot, picking and persisting free ones where needed.

        A persisted port is kept if its service is running (``running[name]``) or the port
        is still free; otherwise (taken by a stranger) a new free port replaces it.
        """
        ports = self.read_ports()
        changed = False
        for name in PORT_NAMES:
            port = ports.get(name)
            service = "kafka" if name.startswith("kafka") else name
            if port is not None and (running.get(service, False) or port_is_free(port)):
                continue
            ports[name] = pick_free_port(set(ports.values()))
            changed = True
        if changed:
            self.state.mkdir(parents=True, exist_ok=True)
            tmp = self.ports_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(ports, indent=2, sort_keys=True) + "\n")
            tmp.replace(self.ports_file)
        return ports
