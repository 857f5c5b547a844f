"""A small thread-safe pool of SFTP sessions, keyed by endpoint and credentials.

``paramiko.SFTPClient`` is not safe for concurrent use, so a session is *checked out*
by one thread at a time and returned afterwards. Sessions are reused only for the exact
same endpoint, user, credentials, host key pin and timeout: the pool key is an HMAC of all
of them under a per-process random key, so it identifies credentials without being an
offline-guessable hash of a password and is safe to log.

Dead sessions are dropped when checked out (transport no longer active, idle or alive
for too long). A session can still die between check-out and use (server restart, idle
timeout on a firewall); :meth:`SftpSessionPool.run` therefore retries an operation once
on a fresh session when a *reused* session fails transiently.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from adapters.sftp.errors import STAGE_REACHABLE
from adapters.sftp.session import (
    Deadline,
    SftpConnectionParams,
    SftpSession,
    SocketFactory,
    open_session,
)
from domain.errors import ConnectorError, ConnectorTransientError

__all__ = ["PoolStats", "SftpSessionPool", "session_key"]

T = TypeVar("T")

log = logging.getLogger("orderflow.sftp.pool")

# Per process: pool keys are comparable within this process only, which is all we need.
_KEY_SECRET = os.urandom(32)


def session_key(params: SftpConnectionParams) -> str:
    """Return the pool key of ``params``: endpoint + credentials fingerprint.

    Two configs share sessions only if every connection-relevant value is equal,
    including the secrets and the host key pin (a session verified against one pin must
    never serve a config that pins another key).
    """
    pin = params.host_key_pin
    parts = (
        params.host,
        str(params.port),
        params.username,
        params.password or "",
        params.private_key or "",
        params.private_key_passphrase or "",
        pin.key.line() if pin.key is not None else "",
        pin.fingerprint or "",
        repr(params.timeout_s),
    )
    # Length-prefix each part so that no two different tuples encode the same bytes.
    material = b"".join(
        len(encoded).to_bytes(4, "big") + encoded
        for encoded in (part.encode("utf-8", "surrogatepass") for part in parts)
    )
    digest = hmac.new(_KEY_SECRET, material, hashlib.sha256).hexdigest()[:16]
    return f"{params.username}@{params.where}#{digest}"


@dataclass(frozen=True)
class PoolStats:
    """Counters for tests, metrics and debugging."""

    opened: int
    reused: int
    discarded: int
    retried: int
    idle: int
    in_use: int


class SftpSessionPool:
    """Check-out/check-in pool of :class:`SftpSession` objects.

    ``max_sessions_per_key`` caps concurrent sessions to one endpoint (partner SFTP
    servers throttle bursts: OpenSSH's ``MaxStartups`` drops new connections), callers
    beyond the cap wait for a free session up to the connection timeout.
    ``max_idle_per_key`` bounds what stays open between exports; ``max_idle_s`` and
    ``max_lifetime_s`` retire sessions before servers or firewalls silently drop them.
    """

    def __init__(
        self,
        *,
        max_sessions_per_key: int = 8,
        max_idle_per_key: int = 4,
        max_idle_s: float = 60.0,
        max_lifetime_s: float = 900.0,
        socket_factory: SocketFactory | None = None,
        opener: Callable[[SftpConnectionParams], SftpSession] | None = None,
    ) -> None:
        if max_sessions_per_key < 1 or max_idle_per_key < 0:
            raise ValueError("max_sessions_per_key must be >= 1 and max_idle_per_key >= 0")
        self.max_sessions_per_key = max_sessions_per_key
        self.max_idle_per_key = max_idle_per_key
        self.max_idle_s = max_idle_s
        self.max_lifetime_s = max_lifetime_s
        self._socket_factory = socket_factory
        self._opener = opener
        self._lock = threading.Condition()
        self._idle: dict[str, list[SftpSession]] = {}
        self._in_use: dict[str, int] = {}
        # Bumped by close(): sessions opened before it are closed on check-in.
        self._generation = 0
        self._opened = self._reused = self._discarded = self._retried = 0

    # -- public API -------------------------------------------------------------------

    def run(self, params: SftpConnectionParams, operation: Callable[[SftpSession], T]) -> T:
        """Run ``operation`` on a pooled session and return its result.

        ``operation`` must be idempotent: if it fails with ``ConnectorTransientError``
        on a session that came from the pool (it may have died while idle), it is run
        once more on a freshly opened session before the error is raised.
        """
        reused = False
        try:
            with self.session(params) as session:
                reused = session.uses > 0
                return operation(session)
        except ConnectorTransientError as exc:
            # The failed session is already closed (session() never pools it after a
            # transient error); only a session that sat in the pool earns a second try.
            if not reused:
                raise
            log.info(
                "pooled SFTP session to %s failed (%s); retrying once on a fresh session",
                params.where,
                exc.message,
            )
        with self._lock:
            self._retried += 1
        with self.session(params, fresh=True) as session:
            return operation(session)

    @contextmanager
    def session(
        self, params: SftpConnectionParams, *, fresh: bool = False
    ) -> Iterator[SftpSession]:
        """Check a session out for the ``with`` block; it returns to the pool afterwards.

        On a ``ConnectorTransientError`` (or any unexpected exception) the session is
        closed instead of returned: its state is unknown. Permanent connector errors (a
        permission problem on one path) leave the session usable, so it is kept.
        ``fresh=True`` ignores idle sessions and opens a new one.
        """
        session = self.acquire(params, fresh=fresh)
        key = session_key(params)
        healthy = False
        try:
            yield session
            healthy = True
        except ConnectorTransientError:
            raise
        except ConnectorError:
            healthy = session.is_alive
            raise
        finally:
            session.uses += 1
            session.last_used = time.monotonic()
            self._check_in(key, session, keep=healthy)

    def acquire(self, params: SftpConnectionParams, *, fresh: bool = False) -> SftpSession:
        """Check out a live session for ``params`` (opening one if needed).

        The caller must give it back with :meth:`release` or :meth:`discard`; prefer the
        :meth:`session` context manager. Waits (up to ``params.timeout_s``) while
        ``max_sessions_per_key`` sessions to this endpoint are in use.
        """
        key = session_key(params)
        deadline = Deadline(params.timeout_s)
        stale: list[SftpSession] = []
        session: SftpSession | None = None
        busy = False
        with self._lock:
            while True:
                idle = self._idle.get(key, [])
                while idle and not fresh:
                    candidate = idle.pop()
                    if self._usable(candidate):
                        session = candidate
                        break
                    stale.append(candidate)
                if fresh and idle and self._count(key) >= self.max_sessions_per_key:
                    # Make room for the fresh session by retiring an idle one.
                    stale.append(idle.pop())
                if session is not None or self._count(key) < self.max_sessions_per_key:
                    self._in_use[key] = self._in_use.get(key, 0) + 1
                    break
                if deadline.expired:
                    busy = True
                    break
                self._lock.wait(deadline.remaining())
            if session is not None:
                self._reused += 1
        self._discard_all(stale)
        if busy:
            raise ConnectorTransientError(
                f"All {self.max_sessions_per_key} SFTP sessions to {params.where} "
                f"stayed busy for {params.timeout_s:g} s",
                stage=STAGE_REACHABLE,
            )
        if session is not None:
            return session
        try:
            session = self._open(params)
        except BaseException:
            with self._lock:
                self._in_use[key] -= 1
                self._lock.notify()
            raise
        with self._lock:
            self._opened += 1
            session.pool_generation = self._generation
        return session

    def release(self, params: SftpConnectionParams, session: SftpSession) -> None:
        """Return a healthy session to the pool."""
        self._check_in(session_key(params), session, keep=True)

    def discard(self, params: SftpConnectionParams, session: SftpSession) -> None:
        """Close a checked-out session that must not be reused."""
        self._check_in(session_key(params), session, keep=False)

    def close(self) -> None:
        """Close every idle session; sessions in use are closed when checked in.

        The pool stays usable: later calls open new sessions.
        """
        with self._lock:
            self._generation += 1
            idle = [s for sessions in self._idle.values() for s in sessions]
            self._idle.clear()
        self._discard_all(idle)

    def stats(self) -> PoolStats:
        """Return the pool's counters."""
        with self._lock:
            return PoolStats(
                opened=self._opened,
                reused=self._reused,
                discarded=self._discarded,
                retried=self._retried,
                idle=sum(len(s) for s in self._idle.values()),
                in_use=sum(self._in_use.values()),
            )

    def __enter__(self) -> SftpSessionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        stats = self.stats()
        return f"SftpSessionPool(idle={stats.idle}, in_use={stats.in_use})"

    # -- internals --------------------------------------------------------------------

    def _open(self, params: SftpConnectionParams) -> SftpSession:
        if self._opener is not None:
            return self._opener(params)
        return open_session(params, socket_factory=self._socket_factory)

    def _count(self, key: str) -> int:
        return self._in_use.get(key, 0) + len(self._idle.get(key, ()))

    def _usable(self, session: SftpSession) -> bool:
        now = time.monotonic()
        return (
            session.is_alive
            and now - session.last_used < self.max_idle_s
            and now - session.created_at < self.max_lifetime_s
        )

    def _check_in(self, key: str, session: SftpSession, *, keep: bool) -> None:
        with self._lock:
            self._in_use[key] = max(self._in_use.get(key, 0) - 1, 0)
            idle = self._idle.setdefault(key, [])
            keep = (
                keep
                and session.pool_generation == self._generation
                and len(idle) < self.max_idle_per_key
                and self._usable(session)
            )
            if keep:
                idle.append(session)
            self._lock.notify()
        if not keep:
            self._discard_all([session])

    def _discard_all(self, sessions: list[SftpSession]) -> None:
        if not sessions:
            return
        with self._lock:
            self._discarded += len(sessions)
        for session in sessions:
            session.close()
