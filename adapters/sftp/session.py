"""Opening one authenticated SFTP session with paramiko, stage by stage.

``open_session`` walks the stages ``reachable`` (TCP + SSH handshake), ``host_key``
(the presented key must be the pinned one -- checked *before* any credential is sent),
``auth`` (private key and/or password) and opens the SFTP channel. Each failure is
raised as a domain ``ConnectorError`` whose ``stage`` says where it stopped.

``paramiko.Transport`` is used directly rather than ``SSHClient``: SSHClient would also
try agent keys and ``~/.ssh`` keys of the process, and we need the presented key's
fingerprint for the security log. There is no host-key policy to get wrong: a key that
does not match the pin ends the connection, nothing is ever added or trusted on first use.

Size: a little over 400 lines, kept whole so the stages read in the order they run.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paramiko
from paramiko.ssh_exception import IncompatiblePeer

from adapters.sftp.errors import (
    STAGE_AUTH,
    STAGE_CONFIG,
    STAGE_HOST_KEY,
    STAGE_REACHABLE,
    connect_error,
)
from adapters.sftp.hostkeys import HostKeyPin, fingerprint_sha256
from adapters.sftp.keys import PrivateKeyError, load_private_key
from domain.errors import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorSecurityError,
    ConnectorTransientError,
)

__all__ = [
    "SECURITY_LOGGER",
    "Deadline",
    "SftpConnectionParams",
    "SftpSession",
    "SocketFactory",
    "open_session",
]

#: Security events (host key mismatches) go here, apart from the connector's own logger,
#: so operators can route them to their SIEM.
SECURITY_LOGGER = "orderflow.security"

security_log = logging.getLogger(SECURITY_LOGGER)
log = logging.getLogger("orderflow.sftp")

#: ``(host, port, timeout_s) -> connected socket``; tests may inject their own.
SocketFactory = Callable[[str, int, float], socket.socket]


def _resolve(host: str, port: int, timeout_s: float) -> list[Any]:
    """``getaddrinfo`` bounded by ``timeout_s``.

    The resolver call itself has no timeout and can hang for tens of seconds on a broken
    DNS setup; running it in a daemon thread keeps ``timeout_s`` a real upper bound.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=lookup, name="orderflow-sftp-resolve", daemon=True).start()
    if not done.wait(timeout_s):
        raise TimeoutError("host name lookup timed out")
    if "error" in outcome:
        raise outcome["error"]
    return list(outcome["addresses"])


def _tcp_connect(host: str, port: int, timeout_s: float) -> socket.socket:
    """Connect to the first reachable address of ``host``, all within ``timeout_s``."""
    deadline = Deadline(timeout_s)
    last_error: OSError = OSError("no addresses")
    for family, kind, proto, _name, address in _resolve(host, port, timeout_s):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last_error = exc
            if deadline.expired:
                break
            continue
        return sock
    raise last_error


class Deadline:
    """A point in time a multi-step operation must finish by."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (at least 1 ms, so it can be passed as a socket timeout)."""
        return max(self._end - time.monotonic(), 0.001)

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() >= self._end


@dataclass(frozen=True)
class SftpConnectionParams:
    """Everything needed to open a session; secret fields never appear in the repr."""

    host: str
    port: int
    username: str
    host_key_pin: HostKeyPin
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    private_key_passphrase: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0

    @property
    def where(self) -> str:
        """``host:port`` for messages (IPv6 literals in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def secret_values(self) -> list[str]:
        """Return the non-empty secret values, for scrubbing text that came from outside."""
        values = (self.password, self.private_key, self.private_key_passphrase)
        return [v for v in values if v]


@dataclass
class SftpSession:
    """One authenticated SSH transport with its SFTP client.

    Not thread-safe (neither is ``paramiko.SFTPClient``): one thread uses it at a time,
    which the pool guarantees by checking sessions out.
    """

    transport: paramiko.Transport
    sftp: paramiko.SFTPClient
    server_fingerprint: str
    server_key_type: str
    server_version: str
    auth_method: str
    created_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    #: How many operations ran on this session; > 0 means it came back from the pool.
    uses: int = 0
    #: Directories known to exist on the server (saves a round trip per export).
    known_dirs: set[str] = field(default_factory=set)
    #: Set by the pool: sessions of an older generation are closed on check-in.
    pool_generation: int = 0

    @property
    def is_alive(self) -> bool:
        """Whether the transport still runs (a dropped connection makes this false)."""
        return self.transport.is_active()

    def close(self) -> None:
        """Close the SFTP channel and the transport; never raises."""
        for closer in (self.sftp.close, self.transport.close):
            try:
                closer()
            except Exception as exc:  # closing a dead connection may raise
                log.debug("error while closing SFTP session: %s", type(exc).__name__)


def _log_host_key_mismatch(
    params: SftpConnectionParams, presented: paramiko.PKey, presented_fp: str
) -> None:
    expected = params.host_key_pin.expected_fingerprint
    security_log.warning(
        "SSH host key mismatch for %s: expected %s, server presented %s %s; "
        "connection refused (possible man-in-the-middle or an unannounced key change)",
        params.where,
        expected,
        presented.get_name(),
        presented_fp,
        extra={
            "security_event": "ssh_host_key_mismatch",
            "host": params.host,
            "port": params.port,
            "expected_fingerprint": expected,
            "presented_fingerprint": presented_fp,
            "presented_key_type": presented.get_name(),
        },
    )


def _handshake(
    transport: paramiko.Transport, params: SftpConnectionParams, deadline: Deadline
) -> None:
    options = transport.get_security_options()
    options.key_types = params.host_key_pin.preferred_algorithms(tuple(options.key_types))
    transport.banner_timeout = deadline.remaining()
    transport.handshake_timeout = deadline.remaining()
    done = threading.Event()
    transport.start_client(event=done)
    if not done.wait(deadline.remaining()):
        raise ConnectorTransientError(
            f"SSH handshake with {params.where} timed out after {params.timeout_s:g} s",
            stage=STAGE_REACHABLE,
        )
    if transport.is_active():
        return
    failure = transport.get_exception()
    if isinstance(failure, IncompatiblePeer):
        raise ConnectorConfigError(
            f"SSH server at {params.where} has no algorithms in common with this client",
            stage=STAGE_REACHABLE,
        )
    # Includes "Error reading SSH protocol banner": not an SSH server, or one shedding
    # load (sshd MaxStartups) -- worth another try later.
    reason = type(failure).__name__ if failure is not None else "connection closed"
    raise ConnectorTransientError(
        f"SSH handshake with {params.where} failed ({reason})", stage=STAGE_REACHABLE
    )


def _check_host_key(transport: paramiko.Transport, params: SftpConnectionParams) -> paramiko.PKey:
    presented = transport.get_remote_server_key()
    blob = presented.asbytes()
    if not params.host_key_pin.matches(blob):
        presented_fp = fingerprint_sha256(blob)
        _log_host_key_mismatch(params, presented, presented_fp)
        raise ConnectorSecurityError(
            f"SSH host key mismatch for {params.where}: expected "
            f"{params.host_key_pin.expected_fingerprint}, server presented "
            f"{presented.get_name()} {presented_fp}",
            stage=STAGE_HOST_KEY,
        )
    return presented


def _authenticate(
    transport: paramiko.Transport,
    params: SftpConnectionParams,
    pkey: paramiko.PKey | None,
    deadline: Deadline,
) -> str:
    """Log in with the key, then (if needed) the password; return the method that worked.

    Failures are collected as fixed texts and raised after the ``except`` blocks, so the
    raised error has no ``__context__`` pointing at a paramiko exception.
    """
    tried: list[str] = []
    accepted: list[str] = []  # more than one when the server demands several (partial auth)
    reasons: list[str] = []
    lost = False
    attempts: list[tuple[str, Callable[[], object]]] = []
    if pkey is not None:
        attempts.append(("publickey", lambda: transport.auth_publickey(params.username, pkey)))
    if params.password:
        password = params.password
        # paramiko falls back to keyboard-interactive if the server only offers that.
        attempts.append(("password", lambda: transport.auth_password(params.username, password)))
    for method, attempt in attempts:
        if transport.is_authenticated():
            break
        tried.append(method)
        transport.auth_timeout = deadline.remaining()
        try:
            attempt()
            accepted.append(method)
        except paramiko.BadAuthenticationType as exc:
            allowed = ", ".join(str(a) for a in exc.allowed_types) or "none"
            reasons.append(f"server does not accept {method} (allowed: {allowed})")
        except paramiko.AuthenticationException as exc:
            if "timeout" in str(exc).lower():
                lost = True
                reasons.append(f"{method} timed out")
            else:
                reasons.append(f"{method} rejected")
        except (paramiko.SSHException, EOFError, OSError) as exc:
            lost = True
            reasons.append(f"connection lost during {method} ({type(exc).__name__})")
            break
    if transport.is_authenticated():
        return "+".join(accepted)
    detail = "; ".join(reasons) or "no credentials"
    message = (
        f"SSH authentication failed for user '{params.username}' at {params.where} "
        f"(tried: {', '.join(tried) or 'nothing'}; {detail})"
    )
    if lost:
        raise ConnectorTransientError(message, stage=STAGE_AUTH)
    raise ConnectorConfigError(message, stage=STAGE_AUTH)


def _open_sftp(
    transport: paramiko.Transport, params: SftpConnectionParams, deadline: Deadline
) -> paramiko.SFTPClient:
    failed: str | None = None
    sftp: paramiko.SFTPClient | None = None
    try:
        sftp = paramiko.SFTPClient.from_transport(transport)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        failed = type(exc).__name__
    if sftp is None:
        if transport.is_active():
            # Logged in, but the server refuses the sftp subsystem: its configuration.
            raise ConnectorConfigError(
                f"SSH server at {params.where} refused the SFTP subsystem "
                f"for user '{params.username}'",
                stage=STAGE_AUTH,
            )
        raise ConnectorTransientError(
            f"SSH connection to {params.where} lost while opening SFTP ({failed})",
            stage=STAGE_AUTH,
        )
    channel = sftp.get_channel()
    if channel is not None:
        # Every later SFTP request times out instead of hanging on a dead peer.
        channel.settimeout(params.timeout_s)
    return sftp


def load_client_key(params: SftpConnectionParams) -> paramiko.PKey | None:
    """Load the configured private key (or ``None``), as a ``stage="config"`` error."""
    if not params.private_key:
        return None
    failure: str | None = None
    try:
        return load_private_key(params.private_key, params.private_key_passphrase)
    except PrivateKeyError as exc:
        failure = str(exc)
    raise ConnectorConfigError(failure, stage=STAGE_CONFIG)


def open_session(
    params: SftpConnectionParams,
    *,
    deadline: Deadline | None = None,
    socket_factory: SocketFactory | None = None,
    client_key: paramiko.PKey | None = None,
    passed: Callable[[str], None] | None = None,
) -> SftpSession:
    """Connect, verify the pinned host key, authenticate and open SFTP.

    ``deadline`` bounds the whole opening (default: ``params.timeout_s``). ``client_key``
    skips re-parsing the private key when the caller has it already. ``passed`` is called
    with each stage name (``reachable``, ``host_key``, ``auth``) once it succeeded. Raises
    ``ConnectorError`` subclasses only; on any failure the connection is closed.
    """
    deadline = deadline if deadline is not None else Deadline(params.timeout_s)
    pkey = client_key if client_key is not None else load_client_key(params)
    connect = socket_factory or _tcp_connect
    try:
        sock = connect(params.host, params.port, deadline.remaining())
    except OSError as exc:
        raise connect_error(exc, params.where, params.timeout_s) from exc
    transport: paramiko.Transport | None = None
    try:
        transport = paramiko.Transport(sock)
        report = passed or _ignore
        _handshake(transport, params, deadline)
        report(STAGE_REACHABLE)
        presented = _check_host_key(transport, params)
        report(STAGE_HOST_KEY)
        method = _authenticate(transport, params, pkey, deadline)
        sftp = _open_sftp(transport, params, deadline)
        report(STAGE_AUTH)
        return SftpSession(
            transport=transport,
            sftp=sftp,
            server_fingerprint=fingerprint_sha256(presented.asbytes()),
            server_key_type=presented.get_name(),
            server_version=str(transport.remote_version),
            auth_method=method,
        )
    except ConnectorError:
        _close_quietly(transport, sock)
        raise
    except Exception as exc:
        # Anything else from the library while setting up: the connection is unusable.
        _close_quietly(transport, sock)
        error = ConnectorTransientError(
            f"SSH connection to {params.where} failed ({type(exc).__name__})",
            stage=STAGE_REACHABLE,
        )
    raise error


def _ignore(_stage: str) -> None:
    """Discard stage progress."""


def _close_quietly(transport: paramiko.Transport | None, sock: socket.socket) -> None:
    try:
        if transport is not None:
            transport.close()
        sock.close()
    except Exception as exc:
        log.debug("error while closing a failed SSH connection: %s", type(exc).__name__)
