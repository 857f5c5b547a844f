"""The connector against an in-process paramiko SFTP server over a temp dir.

A fake at the library edge: paramiko's own server classes, on a loopback socket, serving
a temporary directory. It lets unit tests cover password auth (the integration sshd runs
unprivileged and can only do key auth), host key mismatches, permission errors, session
reuse and dead sessions, without any external service.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from paramiko.sftp import SFTP_OK, SFTP_PERMISSION_DENIED

from adapters.connectors.dropzone_json_v1 import DropzoneJsonV1Connector, encode_order_document
from adapters.sftp import SECURITY_LOGGER, SftpSessionPool
from domain.errors import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorSecurityError,
    ConnectorTransientError,
)
from domain.model import DraftOrder, OrderLine
from domain.ports import TestResult
from domain.redaction import RedactedConfig

USERNAME = "dropper"
PASSWORD = "pa55-w0rd-Ünïcode-💡"
PASSPHRASE = "key passphrase 123"


# --- the in-process server ---------------------------------------------------------------


class _Handle(paramiko.SFTPHandle):
    def stat(self):
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)


class _Folder(paramiko.SFTPServerInterface):
    """SFTP over ``root``; paths under ``server.read_only`` refuse writes (we run as root,
    so real file modes would not stop us)."""

    def __init__(self, server: _SshServer, *args, **kwargs) -> None:
        super().__init__(server, *args, **kwargs)
        self.ssh = server

    def _real(self, path: str) -> str:
        return str(self.ssh.root) + self.canonicalize(path)

    def _writable(self, path: str) -> bool:
        real = os.path.realpath(self._real(path))
        return not any(real.startswith(str(ro)) for ro in self.ssh.read_only)

    def canonicalize(self, path: str) -> str:
        return os.path.normpath("/" + path).replace("//", "/")

    def list_folder(self, path: str):
        real = self._real(path)
        try:
            return [
                paramiko.SFTPAttributes.from_stat(os.stat(os.path.join(real, name)), name)
                for name in os.listdir(real)
            ]
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def stat(self, path: str):
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(self._real(path)))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    lstat = stat

    def open(self, path: str, flags: int, attr):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and not self._writable(path):
            return SFTP_PERMISSION_DENIED
        try:
            fd = os.open(self._real(path), flags, 0o644)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        mode = "wb" if flags & os.O_WRONLY else ("r+b" if flags & os.O_RDWR else "rb")
        handle = _Handle(flags)
        handle.filename = path
        handle.readfile = handle.writefile = os.fdopen(fd, mode)
        return handle

    def remove(self, path: str):
        if not self._writable(path):
            return SFTP_PERMISSION_DENIED
        try:
            os.remove(self._real(path))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        return SFTP_OK

    def posix_rename(self, oldpath: str, newpath: str):
        if not self._writable(newpath):
            return SFTP_PERMISSION_DENIED
        self.ssh.renames += 1
        try:
            os.replace(self._real(oldpath), self._real(newpath))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        return SFTP_OK

    def rename(self, oldpath: str, newpath: str):
        if os.path.exists(self._real(newpath)):
            return paramiko.sftp.SFTP_FAILURE
        return self.posix_rename(oldpath, newpath)

    def mkdir(self, path: str, attr):
        if not self._writable(path):
            return SFTP_PERMISSION_DENIED
        try:
            os.mkdir(self._real(path))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        return SFTP_OK


class _SshServer(paramiko.ServerInterface):
    """Accepts ``USERNAME`` with ``PASSWORD`` and/or an authorised public key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.read_only: list[Path] = []
        self.authorized_keys: list[paramiko.PKey] = []
        self.allow_password = True
        self.renames = 0
        self.logins = 0

    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey" if self.allow_password else "publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        if self.allow_password and username == USERNAME and password == PASSWORD:
            self.logins += 1
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username == USERNAME and any(k.asbytes() == key.asbytes() for k in self.authorized_keys):
            self.logins += 1
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class InProcessSftp:
    """A listening socket whose every connection gets a paramiko SFTP server."""

    def __init__(self, root: Path) -> None:
        self.host_key = paramiko.Ed25519Key.from_private_key(
            _StringIO(_private_text(ed25519.Ed25519PrivateKey.generate()))
        )
        self.server = _SshServer(root)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def host_key_line(self) -> str:
        return f"{self.host_key.get_name()} {self.host_key.get_base64()}"

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                continue
            transport = paramiko.Transport(sock)
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _Folder)
            self.transports.append(transport)
            try:
                transport.start_server(server=self.server)
            except Exception:  # a client that went away during the handshake
                transport.close()

    def drop_connections(self) -> None:
        """Close every server-side transport (a server restart, as clients see it)."""
        for transport in self.transports:
            transport.close()
        self.transports.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()
        self.drop_connections()


class _StringIO:
    def __init__(self, text: str) -> None:
        self._lines = text.splitlines(keepends=True)

    def readlines(self) -> list[str]:
        return self._lines


def _private_text(key, passphrase: str | None = None) -> str:
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
    ).decode("ascii")


@pytest.fixture
def sftpd(tmp_path: Path) -> Iterator[InProcessSftp]:
    (tmp_path / "drop").mkdir()
    server = InProcessSftp(tmp_path)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def connector() -> Iterator[DropzoneJsonV1Connector]:
    with DropzoneJsonV1Connector() as instance:
        yield instance


def config_for(server: InProcessSftp, **overrides) -> dict:
    config = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": USERNAME,
        "password": PASSWORD,
        "remote_dir": "/drop",
        "host_key": server.host_key_line,
        "timeout_s": 5,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def draft(org: uuid.UUID | None = None, **overrides) -> DraftOrder:
    values = {
        "id": uuid.uuid4(),
        "org_id": org or uuid.uuid4(),
        "order_number": "SO-7",
        "customer_code": "C-9",
        "lines": (OrderLine(1, "P-1", Decimal("2"), Decimal("9.95"), "Thing"),),
    }
    values.update(overrides)
    return DraftOrder(**values)


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def secret_texts(*extra: str) -> list[str]:
    return [PASSWORD, PASSPHRASE, *extra]


def assert_secret_free(secrets: list[str], *objects: object) -> None:
    """No secret (nor a long line of a key) in str/repr of the objects or their chains."""
    needles = [s for s in secrets if s]
    for secret in list(needles):
        needles.extend(line for line in secret.splitlines() if len(line) > 20)
    for obj in objects:
        seen: set[int] = set()
        stack = [obj]
        while stack:
            item = stack.pop()
            if item is None or id(item) in seen:
                continue
            seen.add(id(item))
            rendered = f"{item!s} {item!r}"
            if isinstance(item, BaseException):
                rendered += repr(item.args) + repr(vars(item))
                stack += [item.__cause__, item.__context__]
            for needle in needles:
                assert needle not in rendered, f"secret leaked in {type(item).__name__}"


# --- tests ---------------------------------------------------------------------------------


def test_password_export_writes_one_documented_file(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector
) -> None:
    order = draft()
    result = connector.export(order, config_for(sftpd))
    expected_path = f"/drop/{order.org_id}/{order.id}.json"
    assert result.success and result.export_id == order.id
    assert result.storage_key == expected_path
    assert files_under(sftpd.server.root) == [f"drop/{order.org_id}/{order.id}.json"]
    data = (sftpd.server.root / expected_path.lstrip("/")).read_bytes()
    assert data == encode_order_document(order)
    assert json.loads(data)["total"] == "19.90"
    assert result.connector_metadata["bytes"] == len(data)
    assert result.connector_metadata["atomic_rename"] is True
    json.dumps(dict(result.connector_metadata))  # storable as response_json


def test_export_again_replaces_the_file_and_reuses_the_session(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector
) -> None:
    order = draft()
    config = config_for(sftpd)
    connector.export(order, config)
    changed = DraftOrder(**{**order.__dict__, "notes": "second version"})
    connector.export(changed, config)
    connector.export(changed, config)
    assert files_under(sftpd.server.root) == [f"drop/{order.org_id}/{order.id}.json"]
    text = (sftpd.server.root / f"drop/{order.org_id}/{order.id}.json").read_text()
    assert json.loads(text)["notes"] == "second version"
    stats = connector.pool.stats()
    assert (stats.opened, stats.reused) == (1, 2)
    assert sftpd.server.logins == 1
    assert sftpd.server.renames == 3


def test_private_key_auth_with_passphrase(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector
) -> None:
    client = ed25519.Ed25519PrivateKey.generate()
    pem = _private_text(client, PASSPHRASE)
    sftpd.server.authorized_keys.append(
        paramiko.Ed25519Key.from_private_key(_StringIO(pem), password=PASSPHRASE)
    )
    sftpd.server.allow_password = False
    config = config_for(sftpd, password=None, private_key=pem, private_key_passphrase=PASSPHRASE)
    result = connector.test_connection(config)
    assert result.success, result.error_message
    assert result.details["auth_method"] == "publickey"
    assert connector.export(draft(), config).success


def test_host_key_fingerprint_pin_works(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector
) -> None:
    config = config_for(sftpd, host_key=None, host_key_fingerprint=sftpd.host_key.fingerprint)
    assert connector.export(draft(), config).success


def test_host_key_mismatch_is_a_security_error_and_logged(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector, caplog: pytest.LogCaptureFixture
) -> None:
    other = paramiko.Ed25519Key.from_private_key(
        _StringIO(_private_text(ed25519.Ed25519PrivateKey.generate()))
    )
    config = config_for(sftpd, host_key=f"ssh-ed25519 {other.get_base64()}")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectorSecurityError) as info:
        connector.export(draft(), config)
    assert info.value.stage == "host_key"
    assert info.value.retryable is False
    assert sftpd.host_key.fingerprint in info.value.message
    assert other.fingerprint in info.value.message
    # No credential was sent to the impostor.
    assert sftpd.server.logins == 0
    records = [r for r in caplog.records if r.name == SECURITY_LOGGER]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.WARNING
    assert record.security_event == "ssh_host_key_mismatch"
    assert (record.host, record.port) == ("127.0.0.1", sftpd.port)
    assert record.expected_fingerprint == other.fingerprint
    assert record.presented_fingerprint == sftpd.host_key.fingerprint
    assert_secret_free(secret_texts(), info.value, *(r.getMessage() for r in caplog.records))
    assert files_under(sftpd.server.root) == []


def test_wrong_password_is_a_permanent_auth_error(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-" + PASSWORD
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectorConfigError) as info:
        connector.export(draft(), config_for(sftpd, password=wrong))
    assert info.value.stage == "auth"
    assert "authentication failed" in info.value.message
    assert_secret_free(secret_texts(wrong), info.value, *(r.getMessage() for r in caplog.records))
    result = connector.test_connection(config_for(sftpd, password=wrong))
    assert (result.success, result.stage) == (False, "auth")
    assert result.details["stages_passed"] == ["config", "reachable", "host_key"]
    assert_secret_free(secret_texts(wrong), result)


def test_permission_denied_is_a_write_permission_config_error(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector
) -> None:
    sftpd.server.read_only.append(sftpd.server.root / "drop")
    with pytest.raises(ConnectorConfigError) as info:
        connector.export(draft(), config_for(sftpd))
    assert info.value.stage == "write_permission"
    assert "Permission denied" in info.value.message
    result = connector.test_connection(config_for(sftpd))
    assert (result.success, result.stage) == (False, "write_permission")
    assert files_under(sftpd.server.root) == []
    # The session is still good: a permission problem does not poison the pool.
    assert connector.pool.stats().idle == 1


def test_missing_remote_dir_is_a_config_error(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector
) -> None:
    with pytest.raises(ConnectorConfigError, match="does not exist") as info:
        connector.export(draft(), config_for(sftpd, remote_dir="/nope"))
    assert info.value.stage == "write_permission"
    result = connector.test_connection(config_for(sftpd, remote_dir="/nope"))
    assert (result.success, result.stage) == (False, "write_permission")


def test_dead_pooled_session_is_replaced(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector
) -> None:
    config = config_for(sftpd)
    connector.export(draft(), config)
    sftpd.drop_connections()
    # Whether the pool notices the dead transport at check-out or only when the upload
    # fails (then retrying once on a fresh session), the export succeeds.
    assert connector.export(draft(), config).success
    stats = connector.pool.stats()
    assert stats.opened == 2
    assert stats.discarded >= 1


def test_concurrent_exports_share_a_bounded_pool(sftpd: InProcessSftp) -> None:
    pool = SftpSessionPool(max_sessions_per_key=3)
    connector = DropzoneJsonV1Connector(pool=pool)
    config = config_for(sftpd)
    org = uuid.uuid4()
    orders = [draft(org) for _ in range(24)] + [draft(org) for _ in range(6)]
    repeated = orders[:6]  # exported twice, concurrently with the rest
    try:
        with ThreadPoolExecutor(max_workers=8) as executor:
            results = list(executor.map(lambda o: connector.export(o, config), orders + repeated))
    finally:
        connector.close()
    assert all(r.success for r in results)
    names = files_under(sftpd.server.root)
    assert names == sorted(f"drop/{org}/{o.id}.json" for o in orders)
    for order in orders:
        path = sftpd.server.root / f"drop/{org}/{order.id}.json"
        assert path.read_bytes() == encode_order_document(order)
    assert pool.stats().opened <= 3
    assert pool.stats().idle == 0  # closed by connector.close()


def test_connection_success_details(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector
) -> None:
    result = connector.test_connection(config_for(sftpd))
    assert isinstance(result, TestResult)
    assert result.success and result.stage is None and result.error_message is None
    assert result.latency_ms > 0
    assert result.details["stages_passed"] == [
        "config",
        "reachable",
        "host_key",
        "auth",
        "write_permission",
    ]
    assert result.details["server_fingerprint"] == sftpd.host_key.fingerprint
    assert result.details["auth_method"] == "password"
    assert result.details["probe_removed"] is True
    assert files_under(sftpd.server.root) == []  # probe written, renamed and deleted
    assert sftpd.server.renames == 1
    assert connector.pool.stats().opened == 0  # a test never uses (or fills) the pool


def test_connection_failures_by_stage(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector
) -> None:
    other = paramiko.Ed25519Key.from_private_key(
        _StringIO(_private_text(ed25519.Ed25519PrivateKey.generate()))
    )
    with socket.create_server(("127.0.0.1", 0)) as unused:
        closed_port = unused.getsockname()[1]
    cases = {
        "config": config_for(sftpd, host_key=None),
        "reachable": config_for(sftpd, port=closed_port),
        "host_key": config_for(sftpd, host_key=f"ssh-ed25519 {other.get_base64()}"),
        "auth": config_for(sftpd, username="someone-else"),
    }
    for stage, config in cases.items():
        result = connector.test_connection(config)
        assert (result.success, result.stage) == (False, stage), result
        assert result.error_message
        assert_secret_free(secret_texts(), result)


def test_connection_never_raises_even_on_garbage() -> None:
    connector = DropzoneJsonV1Connector()
    for garbage in (None, [], "config", {"host": object()}):
        result = connector.test_connection(garbage)  # type: ignore[arg-type]
        assert (result.success, result.stage) == (False, "config")


def test_slow_server_times_out_transiently(connector: DropzoneJsonV1Connector) -> None:
    # A server that accepts TCP but never says hello.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        config = {
            "host": "127.0.0.1",
            "port": port,
            "username": USERNAME,
            "password": PASSWORD,
            "remote_dir": "/drop",
            "host_key_fingerprint": "SHA256:" + "A" * 43,
            "timeout_s": 0.5,
        }
        started = time.monotonic()
        with pytest.raises(ConnectorTransientError) as info:
            connector.export(draft(), config)
        assert info.value.stage == "reachable"
        result = connector.test_connection(config)
        assert (result.success, result.stage) == (False, "reachable")
        assert time.monotonic() - started < 5


def test_no_secret_anywhere_on_failure_paths(
    sftpd: InProcessSftp, caplog: pytest.LogCaptureFixture
) -> None:
    client = ed25519.Ed25519PrivateKey.generate()
    pem = _private_text(client, PASSPHRASE)
    caplog.set_level(logging.DEBUG)
    connector = DropzoneJsonV1Connector()
    secrets = secret_texts(pem)
    failures: list[object] = []
    configs = [
        config_for(sftpd, private_key=pem, private_key_passphrase="wrong " + PASSPHRASE),
        config_for(sftpd, private_key=pem, private_key_passphrase=PASSPHRASE, password="x"),
        config_for(sftpd, private_key=pem, private_key_passphrase=PASSPHRASE, password=None),
        config_for(sftpd, remote_dir=PASSWORD),  # a secret where it does not belong
        config_for(sftpd, host=PASSWORD),
    ]
    for config in configs:
        redacted = RedactedConfig(
            config, frozenset({"password", "private_key", "private_key_passphrase"})
        )
        try:
            connector.export(draft(), redacted)
        except ConnectorError as exc:
            failures.append(exc)
        failures.append(connector.test_connection(config))
    connector.close()
    assert len([f for f in failures if isinstance(f, ConnectorError)]) == len(configs)
    assert_secret_free(secrets, *failures, connector)
    for record in caplog.records:
        assert_secret_free(secrets, record.getMessage(), record.args, vars(record))


def test_key_rejected_then_password_accepted(
    sftpd: InProcessSftp, connector: DropzoneJsonV1Connector
) -> None:
    stranger = _private_text(ed25519.Ed25519PrivateKey.generate())
    result = connector.test_connection(config_for(sftpd, private_key=stranger))
    assert result.success, result.error_message
    assert result.details["auth_method"] == "password"


def test_hanging_name_lookup_is_bounded_by_the_timeout(
    monkeypatch: pytest.MonkeyPatch, connector: DropzoneJsonV1Connector
) -> None:
    release = threading.Event()

    def hanging_getaddrinfo(*args, **kwargs):
        release.wait(10)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_getaddrinfo)
    config = {
        "host": "sftp.invalid",
        "port": 22,
        "username": USERNAME,
        "password": PASSWORD,
        "remote_dir": "/drop",
        "host_key_fingerprint": "SHA256:" + "A" * 43,
        "timeout_s": 0.3,
    }
    started = time.monotonic()
    try:
        with pytest.raises(ConnectorTransientError, match="Timed out connecting") as info:
            connector.export(draft(), config)
        assert info.value.stage == "reachable"
        result = connector.test_connection(config)
        assert (result.success, result.stage) == (False, "reachable")
        assert time.monotonic() - started < 3
    finally:
        release.set()


def test_unresolvable_host_is_transient(
    monkeypatch: pytest.MonkeyPatch, connector: DropzoneJsonV1Connector
) -> None:
    def failing_getaddrinfo(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", failing_getaddrinfo)
    config = {
        "host": "sftp.invalid",
        "username": USERNAME,
        "password": PASSWORD,
        "remote_dir": "/drop",
        "host_key_fingerprint": "SHA256:" + "A" * 43,
    }
    with pytest.raises(ConnectorTransientError, match=r"Cannot resolve host of sftp\.invalid:22"):
        connector.export(draft(), config)
