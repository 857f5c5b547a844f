"""Local PostgreSQL, Kafka and SFTP without Docker: the Python API behind ``python -m infra``.

``ensure_up()`` starts whatever is not running yet (reusing what is), waits until each
service really answers, writes ``<state>/endpoints.env`` and ``<state>/endpoints.json`` and
returns the :class:`~infra.endpoints.Endpoints`. It is idempotent and safe to call from
several processes at once (a lock file serialises them). ``down()`` stops everything.

These are development/test services: PostgreSQL runs with ``fsync=off``, every service
listens on 127.0.0.1 only, and the SFTP server accepts a single generated key.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from infra._proc import InfraError, ServiceUser, file_lock, service_user
from infra.endpoints import Endpoints
from infra.layout import Layout, default_state_dir
from infra.services import kafka, postgres, sftp
from infra.services.base import ServiceStatus

__all__ = [
    "ALL_SERVICES",
    "Endpoints",
    "InfraError",
    "down",
    "ensure_up",
    "parse_services",
    "read_endpoints",
    "status",
]

#: Service names, in start order.
ALL_SERVICES: tuple[str, ...] = ("postgres", "kafka", "sftp")

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    """Discard progress messages."""


def parse_services(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalise ``"postgres,kafka"`` / an iterable / ``None`` (all) to known service names."""
    if spec is None:
        return ALL_SERVICES
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = {item.strip().lower() for item in items if item.strip()}
    unknown = names - set(ALL_SERVICES)
    if unknown:
        raise InfraError(
            f"unknown service(s): {', '.join(sorted(unknown))} "
            f"(choose from {', '.join(ALL_SERVICES)})"
        )
    return tuple(name for name in ALL_SERVICES if name in names)


def _layout(state_dir: Path | None, user: ServiceUser) -> Layout:
    layout = Layout.for_state(state_dir or default_state_dir(), user)
    layout.state.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    if layout.svc != layout.state:
        layout.svc.mkdir(parents=True, exist_ok=True)
        os.chmod(layout.svc, 0o755)  # noqa: S103 - the service user must traverse it
    return layout


def _statuses(layout: Layout) -> dict[str, ServiceStatus]:
    return {
        "postgres": postgres.status(layout),
        "kafka": kafka.status(layout),
        "sftp": sftp.status(layout),
    }


def _endpoints(layout: Layout, user: ServiceUser, ports: dict[str, int]) -> Endpoints:
    return Endpoints(
        database_url=postgres.database_url(ports["postgres"]),
        kafka_bootstrap_servers=f"127.0.0.1:{ports['kafka']}",
        sftp_host="127.0.0.1",
        sftp_port=ports["sftp"],
        sftp_username=user.name,
        sftp_private_key_path=str(layout.client_key),
        sftp_host_key=sftp.host_key_line(layout),
        sftp_dropzone_dir=str(layout.sftp_dropzone),
    )


def _write_endpoints(layout: Layout, endpoints: Endpoints) -> None:
    for path, text in (
        (layout.endpoints_env, endpoints.env_script()),
        (layout.endpoints_json, endpoints.to_json()),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def ensure_up(
    services: str | Iterable[str] | None = None,
    *,
    state_dir: Path | None = None,
    progress: Progress = _quiet,
) -> Endpoints:
    """Start the requested services (default: all) unless running, and return the endpoints.

    The returned :class:`Endpoints` always names every service (ports are fixed per state
    dir, keys are generated up front); services not requested are not started. Raises
    :class:`InfraError` (with the tail of the failing service's log) if a service does not
    become ready in time: 30 s for PostgreSQL and sshd, 60 s for Kafka.
    """
    wanted = parse_services(services)
    user = service_user(create=True)
    layout = _layout(state_dir, user)
    with file_lock(layout.lock):
        current = _statuses(layout)
        ports = layout.ensure_ports({name: st.running for name, st in current.items()})
        if not current["sftp"].running:
            sftp.prepare(layout, user, ports["sftp"])

        starters: dict[str, Callable[[], int]] = {
            "postgres": lambda: postgres.ensure(layout, user, ports["postgres"]),
            "kafka": lambda: kafka.ensure(layout, user, ports["kafka"], ports["kafka_controller"]),
            "sftp": lambda: sftp.ensure(layout, user, ports["sftp"]),
        }

        def start(name: str) -> tuple[str, int]:
            began = time.monotonic()
            port = starters[name]()
            verb = "reused" if current[name].running else "started"
            progress(f"{name}: {verb} on 127.0.0.1:{port} in {time.monotonic() - began:.1f}s")
            return name, port

        errors: list[str] = []
        # Kafka first: its JVM start is the long pole, the others overlap with it.
        order = sorted(wanted, key=lambda n: n != "kafka")
        with ThreadPoolExecutor(max_workers=len(order) or 1) as pool:
            futures = [pool.submit(start, name) for name in order]
            for future in futures:
                try:
                    name, port = future.result()
                except InfraError as exc:
                    errors.append(str(exc))
                else:
                    ports[name] = port
        if errors:
            raise InfraError("\n\n".join(errors))
        endpoints = _endpoints(layout, user, ports)
        _write_endpoints(layout, endpoints)
    return endpoints


def down(
    services: str | Iterable[str] | None = None,
    *,
    state_dir: Path | None = None,
    progress: Progress = _quiet,
) -> None:
    """Stop the requested services (default: all): pg_ctl stop, SIGTERM Kafka, kill sshd."""
    wanted = parse_services(services)
    user = service_user(create=False)
    layout = Layout.for_state(state_dir or default_state_dir(), user)
    if not layout.state.exists():
        progress(f"nothing to stop: {layout.state} does not exist")
        return
    with file_lock(layout.lock):
        stoppers: dict[str, Callable[[], bool]] = {
            "kafka": lambda: kafka.stop(layout),
            "postgres": lambda: postgres.stop(layout, user),
            "sftp": lambda: sftp.stop(layout),
        }
        errors: list[str] = []
        for name in ("kafka", "postgres", "sftp"):
            if name not in wanted:
                continue
            try:
                was_running = stoppers[name]()
            except InfraError as exc:
                errors.append(str(exc))
                continue
            progress(f"{name}: {'stopped' if was_running else 'not running'}")
        if errors:
            raise InfraError("\n\n".join(errors))


def status(*, state_dir: Path | None = None) -> list[ServiceStatus]:
    """Report each service's state (no side effects)."""
    user = service_user(create=False)
    layout = Layout.for_state(state_dir or default_state_dir(), user)
    return list(_statuses(layout).values())


def read_endpoints(*, state_dir: Path | None = None) -> Endpoints | None:
    """Return the endpoints written by the last ``up`` in this state dir, if any."""
    layout = Layout.for_state(state_dir or default_state_dir(), service_user(create=False))
    try:
        raw = json.loads(layout.endpoints_json.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    return Endpoints.from_env({str(k): str(v) for k, v in raw.items()})


def state_dir_in_use(state_dir: Path | None = None) -> Path:
    """Return the absolute state dir that the other functions would use."""
    return (state_dir or default_state_dir()).resolve()
