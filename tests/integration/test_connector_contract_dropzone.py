"""The connector contract (tests/contract/connector_contract.py) run for DROPZONE_JSON_V1.

Against the real OpenSSH sshd of the ``sftp_server`` fixture. Each test gets its own
directory under the dropzone; documents are counted through an independent paramiko
SFTP client, not through the connector under test.
"""

from __future__ import annotations

import posixpath
import socket
import stat
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from adapters.connectors.dropzone_json_v1 import DropzoneJsonV1Connector
from adapters.sftp import parse_host_key_line
from domain.model import DraftOrder
from infra.endpoints import SftpServer
from tests.contract.connector_contract import ConnectorContract

WRONG_KEY_PASSPHRASE = "dropzone-contract-Passphrase-93"
INVALID_CONFIG_PASSWORD = "dropzone-contract-Password-17"

#: A client key the server does not know (encrypted, so its passphrase is a secret too).
WRONG_PRIVATE_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(WRONG_KEY_PASSPHRASE.encode()),
    )
    .decode()
)


class SftpView:
    """An independent SFTP client on the test server (pinned host key, key login)."""

    def __init__(self, server: SftpServer) -> None:
        sock = socket.create_connection((server.host, server.port), timeout=10)
        self.transport = paramiko.Transport(sock)
        self.transport.start_client(timeout=10)
        expected = parse_host_key_line(server.host_key_line).blob
        if self.transport.get_remote_server_key().asbytes() != expected:
            self.transport.close()
            raise AssertionError("unexpected SFTP host key")
        key = paramiko.Ed25519Key.from_private_key_file(server.private_key_path)
        self.transport.auth_publickey(server.username, key)
        sftp = paramiko.SFTPClient.from_transport(self.transport)
        assert sftp is not None
        self.sftp = sftp

    def names(self, directory: str) -> list[str]:
        try:
            return self.sftp.listdir(directory)
        except FileNotFoundError:
            return []

    def remove_tree(self, path: str) -> None:
        attrs = self.sftp.stat(path)
        if attrs.st_mode is not None and stat.S_ISDIR(attrs.st_mode):
            for name in self.sftp.listdir(path):
                self.remove_tree(posixpath.join(path, name))
            self.sftp.rmdir(path)
        else:
            self.sftp.remove(path)

    def close(self) -> None:
        self.sftp.close()
        self.transport.close()


@pytest.fixture(scope="module")
def view(sftp_server: SftpServer) -> Iterator[SftpView]:
    client = SftpView(sftp_server)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def zone(sftp_server: SftpServer, view: SftpView) -> Iterator[str]:
    """A fresh, empty directory under the dropzone for one test."""
    path = posixpath.join(sftp_server.dropzone_dir, f"contract-{uuid.uuid4().hex[:12]}")
    view.sftp.mkdir(path, 0o755)
    try:
        yield path
    finally:
        view.remove_tree(path)


class TestDropzoneJsonV1Contract(ConnectorContract):
    secret_field_names = frozenset({"password", "private_key", "private_key_passphrase"})

    @pytest.fixture
    def connector(self) -> Iterator[DropzoneJsonV1Connector]:
        with DropzoneJsonV1Connector() as instance:
            yield instance

    @pytest.fixture
    def valid_config(self, sftp_server: SftpServer, zone: str) -> Mapping[str, Any]:
        return {
            "host": sftp_server.host,
            "port": sftp_server.port,
            "username": sftp_server.username,
            "private_key": sftp_server.private_key_pem,
            "remote_dir": zone,
            "host_key": sftp_server.host_key_line,
            "timeout_s": 10,
        }

    @pytest.fixture
    def invalid_config(self, zone: str) -> Mapping[str, Any]:
        return {
            "host": "not a host!",
            "port": 0,
            "username": "",
            "password": INVALID_CONFIG_PASSWORD,
            "remote_dir": f"{zone}/../escape",
            "host_key_fingerprint": "MD5:not-a-fingerprint",
        }

    @pytest.fixture
    def wrong_credentials_config(self, valid_config: Mapping[str, Any]) -> Mapping[str, Any]:
        return {
            **valid_config,
            "private_key": WRONG_PRIVATE_KEY,
            "private_key_passphrase": WRONG_KEY_PASSPHRASE,
        }

    @pytest.fixture
    def count_documents(self, view: SftpView, zone: str) -> Callable[[DraftOrder], int]:
        def count(draft_order: DraftOrder) -> int:
            # Every file of that order in its org directory: the document and any
            # leftover temporary upload (".{id}.json.<hex>.tmp") count.
            org_dir = posixpath.join(zone, str(draft_order.org_id))
            return sum(1 for name in view.names(org_dir) if str(draft_order.id) in name)

        return count


def test_wrong_credentials_are_refused_at_login(sftp_server: SftpServer, zone: str) -> None:
    """Guards the contract's fixture: the wrong key really fails at the auth stage."""
    config = {
        "host": sftp_server.host,
        "port": sftp_server.port,
        "username": sftp_server.username,
        "private_key": WRONG_PRIVATE_KEY,
        "private_key_passphrase": WRONG_KEY_PASSPHRASE,
        "remote_dir": zone,
        "host_key": sftp_server.host_key_line,
    }
    with DropzoneJsonV1Connector() as connector:
        result = connector.test_connection(config)
    assert (result.success, result.stage) == (False, "auth")
    assert result.details["stages_passed"] == ["config", "reachable", "host_key"]
