"""Process, port and log helpers shared by the local service launchers."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Unprivileged system user that runs PostgreSQL and sshd when we are root
#: (override with $ORDERFLOW_SERVICE_USER).
SERVICE_USER_NAME = "orderflow"

#: How many log lines an error message quotes.
LOG_TAIL_LINES = 40


class InfraError(RuntimeError):
    """A local service could not be prepared, started, reached or stopped."""


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def failure(service: str, message: str, *logs: Path) -> InfraError:
    """Build an :class:`InfraError` quoting the tail of the service's log files."""
    parts = [f"{service}: {message}"]
    for log in logs:
        text = tail(log)
        if text:
            parts.append(f"--- last {LOG_TAIL_LINES} lines of {log} ---\n{text}")
        else:
            parts.append(f"--- {log}: empty or missing ---")
    return InfraError("\n".join(parts))


# --- ports ---------------------------------------------------------------------------------


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Tell whether a server could bind ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_port(exclude: set[int], host: str = "127.0.0.1") -> int:
    """Return a currently free TCP port on ``host`` that is not in ``exclude``."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port
    raise InfraError("could not find a free TCP port")  # pragma: no cover


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Tell whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- processes -----------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Tell whether ``pid`` names a live (non-zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def cmdline(pid: int) -> list[str]:
    """Return the argv of ``pid`` ([] if unknown)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def read_pid(path: Path) -> int | None:
    """Read the first line of a pid file as an int, or ``None``."""
    try:
        first = path.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def terminate(pid: int, timeout: float, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to ``pid``, wait up to ``timeout`` s, then SIGKILL; True if it had to kill."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return False
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.1,
) -> bool:
    """Poll ``check`` until it is true (True) or ``timeout`` passes / ``alive`` fails (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if alive is not None and not alive():
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --- users ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceUser:
    """The account that PostgreSQL and sshd run as.

    When we are root it is the unprivileged ``orderflow`` system user (``initdb``
    refuses root, and a non-root sshd can only log in its own user); otherwise it is us.
    """

    name: str
    uid: int
    gid: int
    home: str

    @property
    def switches(self) -> bool:
        """True when processes must be started as another user than the caller."""
        return self.uid != os.geteuid()

    def chown(self, *paths: Path) -> None:
        """Give ``paths`` to this user (no-op when we already are this user)."""
        if not self.switches:
            return
        for path in paths:
            os.chown(path, self.uid, self.gid)

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        stdout: int | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as this user and wait; output is captured unless ``stdout`` is a fd."""
        return subprocess.run(
            list(argv),
            check=False,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env=self.env(env),
            start_new_session=True,
            cwd="/",
            user=self._uid,
            group=self._gid,
            extra_groups=self._groups,
        )

    def spawn_detached(
        self, argv: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None
    ) -> int:
        """Start ``argv`` as this user, detached (own session, parent exits), output to ``log``.

        The log file is opened by the caller, so the service user needs no write access to
        the log directory. Returns the pid of the started program.
        """
        with log.open("ab") as log_fh:
            # stdout (a pipe) carries only the pid; the program's own output goes to the log.
            result = subprocess.run(
                ["/bin/sh", "-c", '"$@" >&2 </dev/null & echo $!', "sh", *argv],
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_fh,
                env=self.env(env),
                start_new_session=True,
                cwd="/",
                timeout=30,
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
            )
        text = result.stdout.decode("ascii", "replace").strip()
        if result.returncode != 0 or not text.isdigit():
            raise InfraError(f"could not start {argv[0]} (sh exit {result.returncode})")
        return int(text)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return a small, predictable environment for service processes."""
        base = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": self.home if self.switches else os.environ.get("HOME", self.home),
            "USER": self.name,
            "LOGNAME": self.name,
        }
        for key in ("JAVA_HOME", "TZ"):
            if key in os.environ:
                base[key] = os.environ[key]
        base.update(extra or {})
        return base

    @property
    def _uid(self) -> int | None:
        return self.uid if self.switches else None

    @property
    def _gid(self) -> int | None:
        return self.gid if self.switches else None

    @property
    def _groups(self) -> list[int] | None:
        return [] if self.switches else None


def current_user() -> ServiceUser:
    """Return the invoking user as a :class:`ServiceUser`."""
    entry = pwd.getpwuid(os.geteuid())
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir or "/")


def service_user(create: bool = True) -> ServiceUser:
    """Return the user that runs PostgreSQL and sshd.

    That is the caller unless the caller is root; then it is the ``orderflow`` system
    user, created (``useradd --system``) when ``create`` is true and it does not exist yet.
    Without ``create`` a missing user yields the caller (nothing can be running as it).
    """
    if os.geteuid() != 0:
        return current_user()
    name = os.environ.get("ORDERFLOW_SERVICE_USER", SERVICE_USER_NAME)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if not create:
            return current_user()
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/bin/sh",
                name,
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        # Exit 9 = "username already in use" (created concurrently): fine.
        if result.returncode not in (0, 9):
            raise InfraError(
                f"useradd {name} failed ({result.returncode}): {result.stderr}"
            ) from None
        entry = pwd.getpwnam(name)
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir or "/")


def can_traverse(user: ServiceUser, path: Path) -> bool:
    """Tell whether ``user`` can reach ``path`` (search permission on it and its parents)."""
    if not user.switches:
        return True
    for directory in [path, *path.parents]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == user.uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid == user.gid:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            return False
    return True


# --- locking -------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 600) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise InfraError(f"timed out waiting for lock {path}") from exc
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)
