"""A local Tryton ERP (``trytond`` + ``sale``, SQLite) for tests, demos and humans.

``python -m infra.tryton up`` starts (or reuses) a server on 127.0.0.1 and prints its
URL, database and login; ``python -m infra.tryton sales`` lists the sale orders in it;
``python -m infra.tryton down`` stops it. From Python: :func:`ensure` / :func:`stop` /
:func:`count_sales`, and for tests :func:`ensure_template` + :func:`start_server`.

Activating ``sale`` takes about a minute, so it happens once: the activated and seeded
database (company, customers ``CUST-100``..``CUST-106`` and ``CUST-CONTRACT``, products
``SKU-001``..``SKU-003``, ``P-100``, ``P-200`` and the non-salable ``NOSALE-1``, see
:mod:`infra.tryton_seed`) is cached as a template under
``~/.cache/orderflow/tryton/<key>/``, keyed by the trytond and trytond-sale versions and
the seed script, and copied for every server. ``trytond`` does not mind running as root
(unlike ``initdb``), so it runs as the calling user; it listens on 127.0.0.1 only.

State of the ``up`` server: ``<state>/tryton/`` (``$ORDERFLOW_INFRA_DIR`` or ``.infra``):
``trytond.conf``, ``<database>.sqlite``, ``server.json`` (url, port, pid) and the log in
``<state>/logs/tryton.log``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from infra._proc import (
    InfraError,
    current_user,
    failure,
    file_lock,
    pick_free_port,
    pid_alive,
    port_is_free,
    read_pid,
    terminate,
    wait_until,
)
from infra.layout import default_state_dir

__all__ = [
    "ADMIN_LOGIN",
    "ADMIN_PASSWORD",
    "DATABASE",
    "TrytonServer",
    "cache_dir",
    "count_sales",
    "ensure",
    "ensure_template",
    "list_sales",
    "main",
    "start_server",
    "status",
    "stop",
    "stop_server",
]

#: Login and password of the administrator of the local (127.0.0.1-only) databases.
ADMIN_LOGIN = "admin"
ADMIN_PASSWORD = "orderflow-tryton-admin"  # noqa: S105 - a local development server
#: Database name of the ``up`` server.
DATABASE = "orderflow"
TEMPLATE_NAME = "template"
#: How long the activation of ``sale`` may take.
BUILD_TIMEOUT_S = 900.0
#: How long a started server may take to answer.
START_TIMEOUT_S = 60.0

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    """Discard progress messages."""


@dataclass(frozen=True)
class TrytonServer:
    """A running local Tryton: where it is and how to log in (``as_config`` for TRYTON)."""

    url: str
    database: str
    username: str
    password: str = field(repr=False)
    port: int
    pid: int
    directory: Path
    log: Path

    @property
    def database_file(self) -> Path:
        """The SQLite file of the database."""
        return self.directory / f"{self.database}.sqlite"

    def as_config(self, **extra: Any) -> dict[str, Any]:
        """Return a ``TRYTON`` connector config for this server."""
        return {
            "url": self.url,
            "database": self.database,
            "username": self.username,
            "password": self.password,
            **extra,
        }


# -- template ------------------------------------------------------------------------------


def _executable(name: str) -> str:
    """Path of a console script installed next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise InfraError(f"{name} is not installed: pip install -e '.[dev]' -c constraints.txt")
    return found


def template_key() -> str:
    """Cache key of the template: trytond and trytond-sale versions + the seed script."""
    try:
        versions = f"{metadata.version('trytond')}-{metadata.version('trytond-sale')}"
    except metadata.PackageNotFoundError as exc:
        raise InfraError(
            "trytond / trytond-sale are not installed: pip install -e '.[dev]' -c constraints.txt"
        ) from exc
    seed = (Path(__file__).resolve().parent / "tryton_seed.py").read_bytes()
    return f"{versions}-{hashlib.sha256(seed).hexdigest()[:12]}"


def cache_dir() -> Path:
    """Where templates are cached: ``$ORDERFLOW_TRYTON_CACHE`` or ``~/.cache/orderflow/tryton``."""
    configured = os.environ.get("ORDERFLOW_TRYTON_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orderflow" / "tryton"


def _write_config(
    directory: Path, *, port: int | None = None, session_timeout_s: int | None = None
) -> Path:
    lines = ["[database]", "uri = sqlite://", f"path = {directory}", ""]
    if port is not None:
        lines += ["[web]", f"listen = 127.0.0.1:{port}", ""]
    if session_timeout_s is not None:
        # Failed logins are counted (and answered ever more slowly, then with HTTP 429)
        # within this window; tests that try wrong passwords on purpose keep it short.
        lines += ["[session]", f"timeout = {session_timeout_s}", "max_attempt = 1000", ""]
    path = directory / "trytond.conf"
    path.write_text("\n".join(lines))
    return path


def _run(argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None) -> None:
    with log.open("ab") as log_fh:
        result = subprocess.run(
            list(argv),
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=BUILD_TIMEOUT_S,
        )
    if result.returncode != 0:
        raise failure("tryton", f"{Path(argv[0]).name} failed (exit {result.returncode})", log)


def ensure_template(*, progress: Progress = _quiet) -> Path:
    """Return the cached template database file, building it first if needed (~1 min).

    Safe to call from several processes: a lock file serialises the builders, and the
    template appears atomically (built in a scratch directory, then renamed).
    """
    root = cache_dir()
    target = root / template_key()
    template = target / f"{TEMPLATE_NAME}.sqlite"
    if template.exists():
        return template
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock", timeout=BUILD_TIMEOUT_S):
        if template.exists():
            return template
        scratch = root / f".build-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        log = scratch / "build.log"
        started = time.monotonic()
        progress(f"tryton: building the template database in {scratch} (about a minute)")
        try:
            config = _write_config(scratch)
            (scratch / f"{TEMPLATE_NAME}.sqlite").touch()  # trytond-admin needs the file
            password_file = scratch / "admin-password"
            password_file.write_text(ADMIN_PASSWORD + "\n")
            env = {**os.environ, "TRYTONPASSFILE": str(password_file)}
            _run(
                [
                    _executable("trytond-admin"),
                    "-c",
                    str(config),
                    "-d",
                    TEMPLATE_NAME,
                    "--all",
                    "-u",
                    "sale",
                    "--activate-dependencies",
                    "--email",
                    "admin@orderflow.invalid",
                ],
                log,
                env=env,
            )
            _run(
                [
                    sys.executable,
                    "-m",
                    "infra.tryton_seed",
                    "--config",
                    str(config),
                    "--database",
                    TEMPLATE_NAME,
                ],
                log,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            )
            password_file.unlink()
            config.unlink()
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)  # the error quotes the build log
            raise
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
        progress(f"tryton: template ready in {time.monotonic() - started:.0f}s: {template}")
        return template


# -- servers -------------------------------------------------------------------------------


def _answers(url: str, timeout: float = 2.0) -> bool:
    body = json.dumps({"id": 0, "method": "common.server.version", "params": []}).encode()
    request = urllib.request.Request(  # noqa: S310 - our own local trytond over http
        f"{url}/rpc/",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return "result" in json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False


def start_server(
    directory: Path,
    *,
    database: str = DATABASE,
    port: int | None = None,
    session_timeout_s: int | None = None,
    log: Path | None = None,
    progress: Progress = _quiet,
) -> TrytonServer:
    """Start ``trytond`` on a copy of the template in ``directory`` and wait until it answers.

    The database file is copied from the template only if ``directory`` has none yet,
    so a restarted server keeps its sale orders.
    """
    template = ensure_template(progress=progress)
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    database_file = directory / f"{database}.sqlite"
    if not database_file.exists():
        shutil.copyfile(template, database_file)
    port = port or pick_free_port(set())
    config = _write_config(directory, port=port, session_timeout_s=session_timeout_s)
    log = log or directory / "trytond.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    pid = current_user().spawn_detached(
        [
            _executable("trytond"),
            "-c",
            str(config),
            "-d",
            database,
            "--pidfile",
            str(directory / "trytond.pid"),
        ],
        log,
    )
    url = f"http://127.0.0.1:{port}"
    if not wait_until(
        lambda: _answers(url), START_TIMEOUT_S, alive=lambda: pid_alive(pid), interval=0.2
    ):
        terminate(pid, 5)
        raise failure("tryton", f"trytond did not answer on {url}", log)
    server = TrytonServer(
        url=url,
        database=database,
        username=ADMIN_LOGIN,
        password=ADMIN_PASSWORD,
        port=port,
        pid=pid,
        directory=directory,
        log=log,
    )
    progress(f"tryton: started on {url} (database {database!r}, pid {pid})")
    return server


def stop_server(server: TrytonServer, timeout: float = 10.0) -> None:
    """Stop a server started by :func:`start_server` (SIGTERM, then SIGKILL)."""
    if pid_alive(server.pid):
        terminate(server.pid, timeout)


# -- the `up` server -----------------------------------------------------------------------


def _state_dir(state_dir: Path | None) -> Path:
    return (state_dir or default_state_dir()).resolve() / "tryton"


def _read_state(directory: Path) -> TrytonServer | None:
    try:
        data = json.loads((directory / "server.json").read_text())
        return TrytonServer(
            url=data["url"],
            database=data["database"],
            username=data["username"],
            password=ADMIN_PASSWORD,
            port=int(data["port"]),
            pid=int(data["pid"]),
            directory=Path(data["directory"]),
            log=Path(data["log"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _running(server: TrytonServer | None) -> bool:
    return server is not None and pid_alive(server.pid) and _answers(server.url)


def ensure(*, state_dir: Path | None = None, progress: Progress = _quiet) -> TrytonServer:
    """Start the local Tryton unless it runs, and return it (url, database, login)."""
    directory = _state_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with file_lock(directory / ".lock", timeout=BUILD_TIMEOUT_S + START_TIMEOUT_S):
        current = _read_state(directory)
        if current is not None and _running(current):
            progress(f"tryton: reused on {current.url} (pid {current.pid})")
            return current
        previous_port = current.port if current is not None else None
        log = directory.parent / "logs" / "tryton.log"
        server = start_server(
            directory, port=_free_or_new(previous_port), log=log, progress=progress
        )
        state = {
            k: str(v) if isinstance(v, Path) else v
            for k, v in asdict(server).items()
            if k != "password"
        }
        (directory / "server.json").write_text(json.dumps(state, indent=2) + "\n")
        return server


def _free_or_new(port: int | None) -> int:
    if port is not None and port_is_free(port):
        return port
    return pick_free_port(set())


def stop(*, state_dir: Path | None = None, progress: Progress = _quiet) -> bool:
    """Stop the local Tryton; return whether it was running."""
    directory = _state_dir(state_dir)
    current = _read_state(directory)
    pid = current.pid if current is not None else read_pid(directory / "trytond.pid")
    if pid is None or not pid_alive(pid):
        progress("tryton: not running")
        return False
    terminate(pid, 10)
    progress(f"tryton: stopped (pid {pid})")
    return True


def status(*, state_dir: Path | None = None) -> TrytonServer | None:
    """Return the local Tryton if it runs, else ``None``."""
    current = _read_state(_state_dir(state_dir))
    return current if _running(current) else None


# -- looking at the sales ------------------------------------------------------------------


def _connect(database_file: Path) -> sqlite3.Connection:
    if not database_file.exists():
        raise InfraError(f"no Tryton database at {database_file}")
    return sqlite3.connect(f"file:{database_file}?mode=ro", uri=True, timeout=10)


def count_sales(
    target: TrytonServer | Path,
    *,
    reference: str | None = None,
    reference_prefix: str | None = None,
) -> int:
    """Count the sale orders (``sale.sale``) in a local Tryton database.

    ``target`` is a :class:`TrytonServer` or the path of its SQLite file. Reads the
    database file directly (read-only), so it observes the ERP independently of the
    connector that wrote to it. ``reference`` / ``reference_prefix`` filter on the sale's
    reference (the TRYTON connector stores the export key ``<org_id>:<draft_order_id>``
    there, so ``reference_prefix=f"{org_id}:"`` counts one organisation's orders).
    """
    path = target.database_file if isinstance(target, TrytonServer) else Path(target)
    sql = "SELECT count(*) FROM sale_sale WHERE 1 = 1"
    params: list[str] = []
    if reference is not None:
        sql += " AND reference = ?"
        params.append(reference)
    if reference_prefix is not None:
        sql += " AND substr(reference, 1, ?) = ?"
        params += [str(len(reference_prefix)), reference_prefix]
    with closing(_connect(path)) as connection:
        (count,) = connection.execute(sql, params).fetchone()
    return int(count)


def list_sales(target: TrytonServer | Path, limit: int = 50) -> list[dict[str, Any]]:
    """Return the newest sale orders with customer, state, reference, lines and total."""
    path = target.database_file if isinstance(target, TrytonServer) else Path(target)
    sql = """
        SELECT s.id, s.number, s.state, s.reference, s.description, p.code AS customer,
               (SELECT count(*) FROM sale_line l WHERE l.sale = s.id) AS lines,
               (SELECT coalesce(sum(l.quantity * l.unit_price), 0)
                  FROM sale_line l WHERE l.sale = s.id) AS total
          FROM sale_sale s LEFT JOIN party_party p ON p.id = s.party
         ORDER BY s.id DESC LIMIT ?"""
    with closing(_connect(path)) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(sql, (limit,))]


def _iter_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    yield f"{'id':>5}  {'state':<10} {'customer':<14} {'lines':>5} {'total':>10}  reference"
    for row in rows:
        yield (
            f"{row['id']:>5}  {row['state'] or '':<10} {row['customer'] or '':<14} "
            f"{row['lines']:>5} {float(row['total']):>10.2f}  {row['reference'] or ''}"
        )


# -- command line --------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"[infra] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infra.tryton up|down|status|sales|template``."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.tryton", description="A local Tryton ERP with the sale module."
    )
    parser.add_argument(
        "command",
        choices=("up", "down", "status", "sales", "template"),
        help="up: start/reuse and print how to log in; down: stop; "
        "status: show; sales: list the sale orders; "
        "template: only build the cached template database",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="state dir (default: $ORDERFLOW_INFRA_DIR or <repo>/.infra)",
    )
    parser.add_argument("--limit", type=int, default=50, help="sales: how many to list")
    args = parser.parse_args(argv)
    try:
        if args.command == "template":
            print(ensure_template(progress=_progress))
        elif args.command == "up":
            server = ensure(state_dir=args.state_dir, progress=_progress)
            print(f"export TRYTON_URL={server.url}")
            print(f"export TRYTON_DATABASE={server.database}")
            print(f"export TRYTON_USERNAME={server.username}")
            print(f"export TRYTON_PASSWORD={server.password}")
        elif args.command == "down":
            stop(state_dir=args.state_dir, progress=_progress)
        elif args.command == "status":
            running = status(state_dir=args.state_dir)
            print(
                f"tryton    running pid={running.pid} port={running.port}  {running.url} "
                f"database={running.database}"
                if running
                else "tryton    stopped"
            )
        else:
            directory = _state_dir(args.state_dir)
            database_file = directory / f"{DATABASE}.sqlite"
            rows = list_sales(database_file, args.limit)
            for line in _iter_lines(rows):
                print(line)
            print(f"{count_sales(database_file)} sale order(s) in {database_file}")
    except InfraError as exc:
        print(f"[infra] ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
