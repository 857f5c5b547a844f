"""SftpSessionPool: check-out/check-in, reuse, dead sessions, retry-once, limits, close."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from adapters.sftp import HostKeyPin, SftpConnectionParams, SftpSession, SftpSessionPool
from adapters.sftp.pool import session_key
from domain.errors import ConnectorConfigError, ConnectorTransientError

FP = "SHA256:" + "A" * 43


class FakeTransport:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active

    def close(self) -> None:
        self.active = False


class FakeSftp:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def fake_session() -> SftpSession:
    return SftpSession(
        transport=FakeTransport(),  # type: ignore[arg-type]
        sftp=FakeSftp(),  # type: ignore[arg-type]
        server_fingerprint=FP,
        server_key_type="ssh-ed25519",
        server_version="SSH-2.0-Fake",
        auth_method="password",
    )


class Opener:
    def __init__(self) -> None:
        self.opened: list[SftpSession] = []
        self.lock = threading.Lock()

    def __call__(self, params: SftpConnectionParams) -> SftpSession:
        session = fake_session()
        with self.lock:
            self.opened.append(session)
        return session


def params(**overrides) -> SftpConnectionParams:
    values = {
        "host": "sftp.example.com",
        "port": 22,
        "username": "u",
        "host_key_pin": HostKeyPin(fingerprint=FP),
        "password": "hunter2-secret",
        "timeout_s": 1.0,
    }
    values.update(overrides)
    return SftpConnectionParams(**values)


@pytest.fixture
def opener() -> Opener:
    return Opener()


def test_sessions_are_reused_per_key(opener: Opener) -> None:
    pool = SftpSessionPool(opener=opener)
    first = pool.run(params(), lambda s: s)
    second = pool.run(params(), lambda s: s)
    other = pool.run(params(password="other"), lambda s: s)
    assert first is second
    assert other is not first
    assert pool.stats().opened == 2 and pool.stats().reused == 1
    assert first.uses == 2


def test_session_key_covers_every_connection_value_and_hides_secrets() -> None:
    base = params()
    variants = [
        replace(base, host="other"),
        replace(base, port=2222),
        replace(base, username="v"),
        replace(base, password="x"),
        replace(base, private_key="k"),
        replace(base, private_key_passphrase="p"),
        replace(base, host_key_pin=HostKeyPin(fingerprint="SHA256:" + "B" * 43)),
        replace(base, timeout_s=2.0),
    ]
    keys = {session_key(v) for v in variants}
    assert len(keys) == len(variants) and session_key(base) not in keys
    assert session_key(base) == session_key(params())
    assert "hunter2" not in session_key(base)
    assert "hunter2" not in repr(base)


def test_transient_failure_on_reused_session_retries_once_on_a_fresh_one(opener: Opener) -> None:
    pool = SftpSessionPool(opener=opener)
    stale = pool.run(params(), lambda s: s)
    calls: list[SftpSession] = []

    def operation(session: SftpSession) -> str:
        calls.append(session)
        if session is stale:
            raise ConnectorTransientError("connection lost", stage="export")
        return "ok"

    assert pool.run(params(), operation) == "ok"
    assert calls[0] is stale and calls[1] is not stale
    assert not stale.is_alive  # the stale one was closed, not pooled again
    assert pool.stats().retried == 1
    assert pool.stats().idle == 1


def test_fresh_session_failure_is_not_retried(opener: Opener) -> None:
    pool = SftpSessionPool(opener=opener)
    calls = []

    def failing(session: SftpSession) -> None:
        calls.append(session)
        raise ConnectorTransientError("server busy", stage="export")

    with pytest.raises(ConnectorTransientError):
        pool.run(params(), failing)
    assert len(calls) == 1
    # A reused session gets exactly one retry, then the error surfaces.
    pool.run(params(), lambda s: None)
    calls.clear()
    with pytest.raises(ConnectorTransientError):
        pool.run(params(), failing)
    assert len(calls) == 2
    assert pool.stats().idle == 0


def test_permanent_error_keeps_the_session(opener: Opener) -> None:
    pool = SftpSessionPool(opener=opener)

    def denied(session: SftpSession) -> None:
        raise ConnectorConfigError("Permission denied", stage="write_permission")

    with pytest.raises(ConnectorConfigError):
        pool.run(params(), denied)
    assert pool.stats().idle == 1
    assert len(opener.opened) == 1


def test_unexpected_exception_discards_the_session(opener: Opener) -> None:
    pool = SftpSessionPool(opener=opener)
    with pytest.raises(KeyError):
        pool.run(params(), lambda s: {}["x"])
    assert pool.stats().idle == 0 and not opener.opened[0].is_alive


def test_dead_and_idle_sessions_are_replaced_at_check_out(opener: Opener) -> None:
    pool = SftpSessionPool(opener=opener, max_idle_s=0.05)
    first = pool.run(params(), lambda s: s)
    first.transport.close()  # type: ignore[call-arg]
    second = pool.run(params(), lambda s: s)
    assert second is not first
    time.sleep(0.1)
    third = pool.run(params(), lambda s: s)
    assert third is not second and not second.is_alive
    assert pool.stats().retried == 0


def test_concurrency_is_capped_and_waiters_time_out(opener: Opener) -> None:
    pool = SftpSessionPool(opener=opener, max_sessions_per_key=2)
    p = params(timeout_s=0.2)
    held = [pool.acquire(p), pool.acquire(p)]
    started = time.monotonic()
    with pytest.raises(ConnectorTransientError, match="stayed busy") as info:
        pool.acquire(p)
    assert info.value.stage == "reachable"
    assert 0.15 < time.monotonic() - started < 2
    # Releasing one lets a waiter through.
    result: list[SftpSession] = []
    waiter = threading.Thread(target=lambda: result.append(pool.acquire(p)))
    waiter.start()
    time.sleep(0.05)
    pool.release(p, held[0])
    waiter.join(5)
    assert result == [held[0]]
    assert len(opener.opened) == 2


def test_many_threads_never_share_a_session(opener: Opener) -> None:
    pool = SftpSessionPool(opener=opener, max_sessions_per_key=4)
    in_use: set[int] = set()
    lock = threading.Lock()
    errors: list[str] = []

    def operation(session: SftpSession) -> None:
        with lock:
            if id(session) in in_use:
                errors.append("shared")
            in_use.add(id(session))
        time.sleep(0.002)
        with lock:
            in_use.discard(id(session))

    threads = [
        threading.Thread(
            target=lambda: [pool.run(params(timeout_s=10), operation) for _ in range(20)]
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(opener.opened) <= 4
    assert pool.stats().in_use == 0


def test_close_closes_idle_and_later_checked_in_sessions(opener: Opener) -> None:
    pool = SftpSessionPool(opener=opener)
    idle = pool.run(params(), lambda s: s)
    busy = pool.acquire(params(password="p2"))
    pool.close()
    assert not idle.is_alive and idle.sftp.closed  # type: ignore[attr-defined]
    assert busy.is_alive
    pool.release(params(password="p2"), busy)
    assert not busy.is_alive
    # Still usable afterwards.
    assert pool.run(params(), lambda s: s) is not idle
    assert "SftpSessionPool(idle=1" in repr(pool)


def test_open_failure_frees_the_slot() -> None:
    def broken(_: SftpConnectionParams) -> SftpSession:
        raise ConnectorTransientError("Connection refused", stage="reachable")

    pool = SftpSessionPool(opener=broken, max_sessions_per_key=1)
    for _ in range(3):
        with pytest.raises(ConnectorTransientError, match="refused"):
            pool.run(params(), lambda s: s)
    assert pool.stats().in_use == 0


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        SftpSessionPool(max_sessions_per_key=0)
