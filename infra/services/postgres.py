"""A throwaway PostgreSQL cluster for development and tests.

The cluster is tuned for speed, not safety (``fsync``, ``synchronous_commit`` and
``full_page_writes`` are off): a crash may corrupt it, which is fine for a dev/test cluster
that ``rm -rf .infra`` recreates. Never point it at data you care about.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from infra._proc import InfraError, ServiceUser, failure, pid_alive
from infra.layout import Layout
from infra.services.base import ServiceStatus

NAME = "postgres"
DATABASE = "orderflow"
SUPERUSER = "postgres"
PREFERRED_MAJOR = "15"

TUNING = """
# --- added by `python -m infra`: a DEV/TEST cluster, durability traded for speed ---
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
"""


def bin_dir() -> Path:
    """Return the PostgreSQL server binaries dir ($ORDERFLOW_PG_BIN, then Debian's 15, newest)."""
    configured = os.environ.get("ORDERFLOW_PG_BIN")
    if configured:
        return Path(configured)
    root = Path("/usr/lib/postgresql")
    preferred = root / PREFERRED_MAJOR / "bin"
    if (preferred / "initdb").exists():
        return preferred
    found = sorted(
        (p / "bin" for p in root.glob("*") if (p / "bin" / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    raise InfraError(
        "postgres: no PostgreSQL server found under /usr/lib/postgresql "
        "(install the Debian package `postgresql`, e.g. `make deps-system`, "
        "or set ORDERFLOW_PG_BIN)"
    )


def database_url(port: int) -> str:
    """Return the SQLAlchemy URL of the ``orderflow`` database on ``port``."""
    return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"


def _postmaster(layout: Layout) -> tuple[int | None, int | None]:
    """Return (pid, port) from ``postmaster.pid`` if that postmaster is alive."""
    try:
        lines = (layout.pg_data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, IndexError, ValueError):
        return None, None
    return (pid, port) if pid_alive(pid) else (None, None)


def status(layout: Layout) -> ServiceStatus:
    """Report whether the cluster runs, and where."""
    pid, port = _postmaster(layout)
    if port is None:
        port = layout.read_ports().get("postgres")
    return ServiceStatus(NAME, pid is not None, pid, port, str(layout.pg_data))


def _psql(port: int, sql: str) -> str:
    proc = subprocess.run(
        [
            str(bin_dir() / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-XtAqc",
            sql,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )
    if proc.returncode != 0:
        raise InfraError(f"postgres: psql failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _ensure_database(layout: Layout, port: int) -> None:
    try:
        query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"  # noqa: S608 - constant
        exists = _psql(port, query)
        if exists != "1":
            _psql(port, f"CREATE DATABASE {DATABASE}")
    except InfraError as exc:
        raise failure(NAME, str(exc), layout.pg_log) from exc


def _initdb(layout: Layout, user: ServiceUser) -> None:
    if layout.pg_data.exists():
        shutil.rmtree(layout.pg_data)
    with layout.pg_log.open("ab") as log:
        proc = user.run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(layout.pg_data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            stdout=log.fileno(),
        )
    if proc.returncode != 0:
        raise failure(NAME, f"initdb failed (exit {proc.returncode})", layout.pg_log)
    with (layout.pg_data / "postgresql.conf").open("a") as conf:
        conf.write(TUNING)


def ensure(layout: Layout, user: ServiceUser, port: int, timeout: float = 30) -> int:
    """Start the cluster unless it already runs; create the database; return its port."""
    pid, running_port = _postmaster(layout)
    if pid is not None and running_port is not None:
        _ensure_database(layout, running_port)
        return running_port
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.pg_root.mkdir(parents=True, exist_ok=True)
    user.chown(layout.pg_root)
    if not (layout.pg_data / "PG_VERSION").exists():
        _initdb(layout, user)
    socket_dir = layout.pg_socket_dir
    socket_dir.mkdir(parents=True, exist_ok=True)
    user.chown(socket_dir)
    options = f"-p {port} -k {shlex.quote(str(socket_dir))} -c listen_addresses=127.0.0.1"
    with layout.pg_log.open("ab") as log:
        proc = user.run(
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(layout.pg_data),
                "-o",
                options,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            stdout=log.fileno(),
            timeout=timeout + 10,
        )
    if proc.returncode != 0:
        raise failure(NAME, f"pg_ctl start failed (exit {proc.returncode})", layout.pg_log)
    _ensure_database(layout, port)
    return port


def stop(layout: Layout, user: ServiceUser, timeout: float = 30) -> bool:
    """Stop the cluster (fast shutdown); return True if it was running."""
    pid, _ = _postmaster(layout)
    if pid is None:
        return False
    with layout.pg_log.open("ab") as log:
        proc = user.run(
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(layout.pg_data),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
            ],
            stdout=log.fileno(),
            timeout=timeout + 10,
        )
    if proc.returncode != 0:
        raise failure(NAME, f"pg_ctl stop failed (exit {proc.returncode})", layout.pg_log)
    return True
