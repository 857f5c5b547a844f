"""Smoke tests of the three backing services, whichever way tests/conftest.py found them."""

from __future__ import annotations

import base64
import io
import time
import uuid
from pathlib import Path

import paramiko
import psycopg2
import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url

from infra.endpoints import Endpoints, SftpServer

pytestmark = pytest.mark.integration


# --- PostgreSQL ---------------------------------------------------------------------------


def test_database_url_is_sqlalchemy_psycopg2_form(database_url: str) -> None:
    url = make_url(database_url)
    assert url.drivername == "postgresql+psycopg2"
    assert url.database


def test_postgres_answers_select_1(database_url: str) -> None:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("select 1")
            assert cur.fetchone() == (1,)
            cur.execute("show server_version_num")
            row = cur.fetchone()
            assert row is not None and int(row[0]) >= 150000
    finally:
        conn.close()


# --- Kafka --------------------------------------------------------------------------------


def test_kafka_create_topic_produce_and_consume(kafka_bootstrap_servers: str) -> None:
    topic = f"infra-smoke-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap_servers})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=30)
    try:
        producer = Producer(
            {"bootstrap.servers": kafka_bootstrap_servers, "enable.idempotence": True}
        )
        delivered: list[str | None] = []
        producer.produce(
            topic,
            key=b"order-1",
            value=b'{"hello": "kafka"}',
            headers=[("event_type", b"Smoke")],
            on_delivery=lambda err, _msg: delivered.append(None if err is None else str(err)),
        )
        assert producer.flush(30) == 0
        assert delivered == [None]

        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap_servers,
                "group.id": f"infra-smoke-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 30
            message = None
            while time.monotonic() < deadline:
                polled = consumer.poll(0.5)
                if polled is None:
                    continue
                error = polled.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    continue
                assert error is None, error
                message = polled
                break
            assert message is not None, "no message consumed within 30 s"
            assert message.key() == b"order-1"
            assert message.value() == b'{"hello": "kafka"}'
            assert dict(message.headers() or []) == {"event_type": b"Smoke"}
            consumer.commit(message=message, asynchronous=False)
        finally:
            consumer.close()
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)


# --- SFTP ---------------------------------------------------------------------------------


def _public_key(line: str) -> paramiko.PKey:
    key_type, data = line.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(data))


def _client_key(server: SftpServer) -> paramiko.PKey:
    return paramiko.Ed25519Key.from_private_key(io.StringIO(server.private_key_pem))


def _pinned_client(server: SftpServer, host_key_line: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    host_id = server.host if server.port == 22 else f"[{server.host}]:{server.port}"
    client.get_host_keys().add(host_id, host_key_line.split()[0], _public_key(host_key_line))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _connect(client: paramiko.SSHClient, server: SftpServer, pkey: paramiko.PKey) -> None:
    client.connect(
        server.host,
        port=server.port,
        username=server.username,
        pkey=pkey,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
        banner_timeout=10,
        auth_timeout=10,
    )


def test_sftp_private_key_path_matches_pem(sftp_server: SftpServer) -> None:
    assert Path(sftp_server.private_key_path).read_text() == sftp_server.private_key_pem
    assert sftp_server.host_key_line.startswith("ssh-")
    assert sftp_server.dropzone_dir.startswith("/")


def test_sftp_upload_to_temp_name_then_posix_rename(sftp_server: SftpServer) -> None:
    name = f"smoke-{uuid.uuid4().hex}.json"
    payload = b'{"order": "SO-1"}\n'
    client = _pinned_client(sftp_server, sftp_server.host_key_line)
    try:
        _connect(client, sftp_server, _client_key(sftp_server))
        sftp = client.open_sftp()
        try:
            final = f"{sftp_server.dropzone_dir}/{name}"
            temp = f"{sftp_server.dropzone_dir}/.{name}.part"
            sftp.putfo(io.BytesIO(payload), temp)
            sftp.posix_rename(temp, final)
            listing = sftp.listdir(sftp_server.dropzone_dir)
            assert name in listing
            assert f".{name}.part" not in listing
            with sftp.open(final, "rb") as fh:
                assert fh.read() == payload
            local = Path(sftp_server.dropzone_dir) / name
            if Path(sftp_server.dropzone_dir).is_dir():  # local sshd: same path on disk
                assert local.read_bytes() == payload
            sftp.remove(final)
        finally:
            sftp.close()
    finally:
        client.close()


def test_sftp_wrong_pinned_host_key_is_rejected(sftp_server: SftpServer) -> None:
    impostor = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    client = _pinned_client(sftp_server, impostor)
    try:
        with pytest.raises(paramiko.BadHostKeyException):
            _connect(client, sftp_server, _client_key(sftp_server))
    finally:
        client.close()


def test_sftp_unknown_client_key_is_refused(sftp_server: SftpServer) -> None:
    pem = io.StringIO(
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    client = _pinned_client(sftp_server, sftp_server.host_key_line)
    try:
        with pytest.raises(paramiko.AuthenticationException):
            _connect(client, sftp_server, paramiko.Ed25519Key.from_private_key(pem))
    finally:
        client.close()


# --- all together -------------------------------------------------------------------------


def test_endpoints_travel_through_env(endpoints: Endpoints) -> None:
    env = endpoints.as_env()
    assert Endpoints.from_env(env) == endpoints
    assert Endpoints.from_env({k: v for k, v in env.items() if k != "SFTP_PORT"}) is None
    assert endpoints.sftp_server().private_key_pem.startswith("-----BEGIN OPENSSH PRIVATE KEY")
