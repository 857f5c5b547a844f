"""DropzoneJsonV1Connector against a real OpenSSH sshd (the shared ``sftp_server`` fixture).

Each test works in its own directory under the server's dropzone. What is on the server
is checked through an independent paramiko client (the oracle), not through the code
under test.
"""

from __future__ import annotations

import json
import logging
import posixpath
import socket
import stat
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from adapters.connectors.dropzone_json_v1 import DropzoneJsonV1Connector, encode_order_document
from adapters.sftp import SECURITY_LOGGER, fingerprint_sha256, parse_host_key_line
from domain.errors import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorSecurityError,
    ConnectorTransientError,
)
from domain.model import DraftOrder, OrderLine
from domain.redaction import RedactedConfig

pytestmark = pytest.mark.integration

PASSPHRASE = "integration passphrase ✓"
SECRET_FIELDS = frozenset({"password", "private_key", "private_key_passphrase"})


# --- helpers -------------------------------------------------------------------------------


class Oracle:
    """An independent SFTP view of the server, to check what the connector did."""

    def __init__(self, server: Any) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.transport = paramiko.Transport(self.sock)
        self.transport.start_client(timeout=10)
        expected = parse_host_key_line(server.host_key_line).blob
        if self.transport.get_remote_server_key().asbytes() != expected:
            raise AssertionError("oracle: unexpected host key")
        key = paramiko.Ed25519Key.from_private_key_file(server.private_key_path)
        self.transport.auth_publickey(server.username, key)
        sftp = paramiko.SFTPClient.from_transport(self.transport)
        assert sftp is not None
        self.sftp = sftp

    def files(self, directory: str) -> list[str]:
        """Every file below ``directory`` (hidden ones too), relative, sorted."""
        found: list[str] = []

        def walk(path: str, prefix: str) -> None:
            for entry in self.sftp.listdir_attr(path):
                relative = posixpath.join(prefix, entry.filename)
                if entry.st_mode is not None and stat.S_ISDIR(entry.st_mode):
                    walk(posixpath.join(path, entry.filename), relative)
                else:
                    found.append(relative)

        walk(directory, "")
        return sorted(found)

    def read(self, path: str) -> bytes:
        with self.sftp.open(path, "rb") as handle:
            return handle.read()

    def remove_tree(self, path: str) -> None:
        try:
            attrs = self.sftp.stat(path)
        except FileNotFoundError:
            return
        if attrs.st_mode is not None and stat.S_ISDIR(attrs.st_mode):
            self.sftp.chmod(path, 0o755)
            for entry in self.sftp.listdir(path):
                self.remove_tree(posixpath.join(path, entry))
            self.sftp.rmdir(path)
        else:
            self.sftp.remove(path)

    def close(self) -> None:
        self.sftp.close()
        self.transport.close()


@pytest.fixture(scope="module")
def oracle(sftp_server: Any) -> Iterator[Oracle]:
    client = Oracle(sftp_server)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def zone(sftp_server: Any, oracle: Oracle) -> Iterator[str]:
    """A fresh directory under the dropzone for one test (removed afterwards)."""
    path = posixpath.join(sftp_server.dropzone_dir, f"it-{uuid.uuid4().hex[:12]}")
    oracle.sftp.mkdir(path, 0o755)
    try:
        yield path
    finally:
        oracle.remove_tree(path)


@pytest.fixture
def connector() -> Iterator[DropzoneJsonV1Connector]:
    with DropzoneJsonV1Connector() as instance:
        yield instance


def config_for(server: Any, remote_dir: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "private_key": server.private_key_pem,
        "remote_dir": remote_dir,
        "host_key": server.host_key_line,
        "timeout_s": 10,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def draft(org: uuid.UUID | None = None, **overrides: Any) -> DraftOrder:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "org_id": org or uuid.uuid4(),
        "order_number": "SO-2024-0042",
        "customer_code": "CUST-ÄÖÜ",
        "currency": "EUR",
        "notes": "Zustellung über Tor 3 📦",
        "lines": (
            OrderLine(1, "P-100", Decimal("3"), Decimal("2.50"), "Schrauben", "pcs"),
            OrderLine(2, "P-200", Decimal("1.25"), Decimal("10.00"), "Kabel", "m"),
        ),
    }
    values.update(overrides)
    return DraftOrder(**values)


def encrypted_copy(private_key_pem: str, passphrase: str) -> str:
    """The same key, re-serialised with a passphrase (so the server still accepts it)."""
    key = serialization.load_ssh_private_key(private_key_pem.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()


def other_host_key_line() -> str:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def secret_needles(*secrets: str) -> list[str]:
    needles = [s for s in secrets if s]
    for secret in secrets:
        needles += [line for line in secret.splitlines() if len(line) > 20]
    return needles


def assert_secret_free(needles: list[str], *objects: object) -> None:
    for obj in objects:
        stack: list[object] = [obj]
        seen: set[int] = set()
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
                assert needle not in rendered, f"secret leaked via {type(item).__name__}"


# --- export --------------------------------------------------------------------------------


def test_export_creates_exactly_one_documented_file(
    sftp_server: Any, oracle: Oracle, zone: str, connector: DropzoneJsonV1Connector
) -> None:
    order = draft()
    result = connector.export(order, config_for(sftp_server, zone))
    path = f"{zone}/{order.org_id}/{order.id}.json"
    assert result.success and result.export_id == order.id
    assert result.storage_key == path
    assert oracle.files(zone) == [f"{order.org_id}/{order.id}.json"]
    data = oracle.read(path)
    assert data == encode_order_document(order)
    document = json.loads(data.decode("utf-8"))
    assert document["format"] == "orderflow.dropzone.order"
    assert document["format_version"] == 1
    assert document["export_key"] == f"{order.org_id}:{order.id}"
    assert document["notes"] == "Zustellung über Tor 3 📦"
    assert [line["line_total"] for line in document["lines"]] == ["7.50", "12.5000"]
    assert document["total"] == "20.0000"
    assert result.connector_metadata["bytes"] == len(data)
    # The local sshd's dropzone is on this machine's disk too: same bytes there.
    local = Path(path)
    if local.exists():
        assert local.read_bytes() == data


def test_export_twice_replaces_the_file_and_leaves_no_temp_files(
    sftp_server: Any, oracle: Oracle, zone: str, connector: DropzoneJsonV1Connector
) -> None:
    order = draft()
    config = config_for(sftp_server, zone)
    first = connector.export(order, config)
    changed = DraftOrder(**{**order.__dict__, "notes": "second version"})
    second = connector.export(changed, config)
    assert first.storage_key == second.storage_key
    assert oracle.files(zone) == [f"{order.org_id}/{order.id}.json"]
    assert json.loads(oracle.read(second.storage_key or ""))["notes"] == "second version"
    # Re-exporting the same order is byte-identical.
    connector.export(changed, config)
    assert oracle.read(second.storage_key or "") == encode_order_document(changed)
    assert oracle.files(zone) == [f"{order.org_id}/{order.id}.json"]
    stats = connector.pool.stats()
    assert (stats.opened, stats.reused) == (1, 2)


def test_concurrent_exports_from_several_threads(
    sftp_server: Any, oracle: Oracle, zone: str, connector: DropzoneJsonV1Connector
) -> None:
    config = config_for(sftp_server, zone)
    orgs = [uuid.uuid4() for _ in range(3)]
    orders = [draft(orgs[i % 3]) for i in range(30)]
    # Every order twice, the duplicates racing their originals onto the same path.
    work = orders + orders[::-1]
    with ThreadPoolExecutor(max_workers=8) as executor:
        results = list(executor.map(lambda o: connector.export(o, config), work))
    assert all(result.success for result in results)
    assert oracle.files(zone) == sorted(f"{o.org_id}/{o.id}.json" for o in orders)
    for order in orders[:5]:
        assert oracle.read(f"{zone}/{order.org_id}/{order.id}.json") == encode_order_document(order)
    assert connector.pool.stats().opened <= connector.pool.max_sessions_per_key


def test_encrypted_private_key(
    sftp_server: Any, oracle: Oracle, zone: str, connector: DropzoneJsonV1Connector
) -> None:
    config = config_for(
        sftp_server,
        zone,
        private_key=encrypted_copy(sftp_server.private_key_pem, PASSPHRASE),
        private_key_passphrase=PASSPHRASE,
    )
    order = draft()
    assert connector.export(order, config).success
    assert oracle.files(zone) == [f"{order.org_id}/{order.id}.json"]


def test_fingerprint_pin(sftp_server: Any, zone: str, connector: DropzoneJsonV1Connector) -> None:
    fingerprint = parse_host_key_line(sftp_server.host_key_line).fingerprint
    config = config_for(sftp_server, zone, host_key=None, host_key_fingerprint=fingerprint)
    assert connector.export(draft(), config).success


def test_dead_pooled_session_is_replaced(
    sftp_server: Any, oracle: Oracle, zone: str, connector: DropzoneJsonV1Connector
) -> None:
    config = config_for(sftp_server, zone)
    connector.export(draft(), config)
    stale = connector.pool.acquire(connector.connection_params(connector.prepare_config(config)))
    # Cut the connection under the session, as a server restart or a firewall would.
    stale.transport.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    connector.pool.release(connector.connection_params(connector.prepare_config(config)), stale)
    order = draft()
    assert connector.export(order, config).success
    assert f"{order.org_id}/{order.id}.json" in oracle.files(zone)
    assert connector.pool.stats().opened == 2


def test_session_dying_unnoticed_is_retried_once_on_a_fresh_one(
    sftp_server: Any, oracle: Oracle, zone: str, connector: DropzoneJsonV1Connector
) -> None:
    config = config_for(sftp_server, zone)
    params = connector.connection_params(connector.prepare_config(config))
    connector.export(draft(), config)
    stale = connector.pool.acquire(params)
    stale.transport.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    # Pretend the transport still looks alive, as it does until paramiko's reader thread
    # notices: the upload itself must then fail -- as a transient error -- and be retried.
    stale.transport.is_active = lambda: True  # type: ignore[method-assign]
    connector.pool.release(params, stale)
    order = draft()
    result = connector.export(order, config)
    assert result.success
    assert oracle.read(result.storage_key or "") == encode_order_document(order)
    stats = connector.pool.stats()
    assert (stats.opened, stats.retried) == (2, 1)


def test_host_key_mismatch_is_a_security_error_and_logged(
    sftp_server: Any,
    oracle: Oracle,
    zone: str,
    connector: DropzoneJsonV1Connector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = other_host_key_line()
    caplog.set_level(logging.WARNING, logger=SECURITY_LOGGER)
    with pytest.raises(ConnectorSecurityError) as info:
        connector.export(draft(), config_for(sftp_server, zone, host_key=wrong))
    error = info.value
    assert error.stage == "host_key" and error.retryable is False
    presented = parse_host_key_line(sftp_server.host_key_line).fingerprint
    expected = fingerprint_sha256(parse_host_key_line(wrong).blob)
    assert presented in error.message and expected in error.message
    records = [r for r in caplog.records if r.name == SECURITY_LOGGER]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.WARNING
    assert record.security_event == "ssh_host_key_mismatch"
    assert (record.host, record.port) == (sftp_server.host, sftp_server.port)
    assert record.expected_fingerprint == expected
    assert record.presented_fingerprint == presented
    assert oracle.files(zone) == []


def test_wrong_client_key_is_a_permanent_auth_error(
    sftp_server: Any, zone: str, connector: DropzoneJsonV1Connector
) -> None:
    stranger = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ConnectorConfigError) as info:
        connector.export(draft(), config_for(sftp_server, zone, private_key=stranger))
    assert info.value.stage == "auth"
    assert info.value.retryable is False
    assert "authentication failed" in info.value.message
    assert_secret_free(secret_needles(stranger), info.value)


def test_closed_port_is_transient(
    sftp_server: Any, zone: str, connector: DropzoneJsonV1Connector
) -> None:
    with pytest.raises(ConnectorTransientError) as info:
        connector.export(draft(), config_for(sftp_server, zone, port=closed_port()))
    assert info.value.stage == "reachable"
    assert info.value.retryable is True
    assert "refused" in info.value.message


def test_read_only_folder_is_a_write_permission_error(
    sftp_server: Any, oracle: Oracle, zone: str, connector: DropzoneJsonV1Connector
) -> None:
    read_only = posixpath.join(zone, "read-only")
    oracle.sftp.mkdir(read_only, 0o755)
    oracle.sftp.chmod(read_only, 0o555)
    try:
        oracle.sftp.mkdir(posixpath.join(read_only, "probe"))
    except PermissionError:
        pass
    else:
        pytest.skip("the SFTP user is not bound by file modes (server runs as root?)")
    config = config_for(sftp_server, read_only)
    with pytest.raises(ConnectorConfigError) as info:
        connector.export(draft(), config)
    assert info.value.stage == "write_permission"
    assert "Permission denied" in info.value.message
    result = connector.test_connection(config)
    assert (result.success, result.stage) == (False, "write_permission")
    assert oracle.files(zone) == []


# --- test_connection -----------------------------------------------------------------------


def test_connection_succeeds_and_cleans_up(
    sftp_server: Any, oracle: Oracle, zone: str, connector: DropzoneJsonV1Connector
) -> None:
    result = connector.test_connection(config_for(sftp_server, zone))
    assert result.success, result.error_message
    assert result.stage is None and result.error_message is None
    assert 0 < result.latency_ms < 10_000
    assert result.details["stages_passed"] == [
        "config",
        "reachable",
        "host_key",
        "auth",
        "write_permission",
    ]
    assert (
        result.details["server_fingerprint"]
        == parse_host_key_line(sftp_server.host_key_line).fingerprint
    )
    assert result.details["server_version"].startswith("SSH-2.0-OpenSSH")
    assert result.details["atomic_rename"] is True
    assert result.details["probe_removed"] is True
    assert oracle.files(zone) == []


def test_connection_reports_each_failing_stage(
    sftp_server: Any, zone: str, connector: DropzoneJsonV1Connector
) -> None:
    stranger = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    cases = {
        "config": config_for(sftp_server, zone, host_key=None),
        "reachable": config_for(sftp_server, zone, port=closed_port()),
        "host_key": config_for(sftp_server, zone, host_key=other_host_key_line()),
        "auth": config_for(sftp_server, zone, private_key=stranger),
        "write_permission": config_for(sftp_server, zone + "/does-not-exist"),
    }
    for stage, config in cases.items():
        result = connector.test_connection(config)
        assert (result.success, result.stage) == (False, stage), result
        assert result.error_message
        assert result.latency_ms >= 0
    assert connector.pool.stats().opened == 0


def test_no_secret_in_errors_results_reprs_or_logs(
    sftp_server: Any, zone: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    encrypted = encrypted_copy(sftp_server.private_key_pem, PASSPHRASE)
    needles = secret_needles(sftp_server.private_key_pem, encrypted, PASSPHRASE)
    connector = DropzoneJsonV1Connector()
    seen: list[object] = [connector]
    good = config_for(sftp_server, zone, private_key=encrypted, private_key_passphrase=PASSPHRASE)
    configs = [
        good,
        {**good, "private_key_passphrase": "wrong " + PASSPHRASE},
        {**good, "host_key": other_host_key_line()},
        {**good, "port": closed_port()},
        {**good, "remote_dir": zone + "/missing"},
        {**good, "private_key": sftp_server.private_key_pem, "private_key_passphrase": None},
    ]
    for config in configs:
        config = {k: v for k, v in config.items() if v is not None}
        redacted = RedactedConfig(config, SECRET_FIELDS)
        seen.append(redacted)
        try:
            seen.append(connector.export(draft(), redacted))
        except ConnectorError as exc:
            seen.append(exc)
        seen.append(connector.test_connection(config))
    connector.close()
    errors = [item for item in seen if isinstance(item, ConnectorError)]
    assert len(errors) == 4
    assert_secret_free(needles, *seen)
    for record in caplog.records:
        assert_secret_free(needles, record.getMessage(), vars(record))
