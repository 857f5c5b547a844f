"""Bad input through the real pipeline: PostgreSQL, the outbox relay, Kafka, the push worker, SFTP.

Each case shows a clear error (a DLQ record with a reason, a FAILED ``PushResult``,
a FAILED push log row with an ``error_message``) AND that nothing else is lost or
blocked: every topic has ONE partition, so after each bad message a good order
travels the very same partition and must still succeed.

One relay and one worker serve the whole module (own database, own topic prefix).
The worker's registry is the real one, except that its ``DROPZONE_JSON_V1``
connector has a deployment-lowered document limit (``max_document_bytes``, as
docs/dropzone-json-v1.md allows), so the size-limit case needs no 5 MiB message.
Every wait is a bounded deadline loop; nothing asserts on timing.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastavro import parse_schema, schemaless_writer
from sqlalchemy import Engine, text

from adapters.avro.codec import MAGIC, decode_push_result, encode_push_requested
from adapters.avro.records import order_to_avro, push_requested_record
from adapters.connectors.dropzone_json_v1 import DropzoneJsonV1Connector, encode_order_document
from adapters.connectors.mock import MockConnector
from adapters.connectors.registry import ConnectorRegistry
from adapters.crypto.encryption import ConfigCipher
from adapters.crypto.keys import MasterKeyring
from adapters.kafka.config import producer_config
from adapters.kafka.headers import EventHeaders, build_headers
from adapters.kafka.producer import EventProducer
from adapters.kafka.topics import TopicNames
from adapters.postgres.engine import make_session_factory
from adapters.sftp import SECURITY_LOGGER
from consumer.handling import RetrySettings
from consumer.worker import PushWorker, WorkerSettings
from domain.errors import ConnectorRejectedError
from domain.idempotency import export_key, generate_idempotency_key
from domain.model import DraftOrder, OrderLine
from domain.ports import ERPConnectorPort, ExportResult
from entrypoints.bootstrap import sql_unit_of_work
from entrypoints.cli import EXIT_FAILED, main
from entrypoints.relay_wiring import RelayConfig, build_relay
from entrypoints.worker_process import WorkerConfig, build_worker
from infra.endpoints import SftpServer
from producer.approval import (
    MAX_EVENT_PAYLOAD_BYTES,
    OrderTooLarge,
    UnstorableOrder,
    approve_draft_order,
    new_traceparent,
)
from producer.relay_settings import RelaySettings
from schemas.loader import fingerprint_of, schema_json
from tests.fakes import FakeConnector
from tests.integration._pipeline import OUTBOX_WRITTEN, delete_topics, relay_and_worker

pytestmark = pytest.mark.integration

DEADLINE = 90.0
MASTER_KEY = os.urandom(32).hex()
#: The worker's (lowered) dropzone document limit.
DOC_LIMIT = 256 * 1024
#: The documented default limit of DROPZONE_JSON_V1 (docs/dropzone-json-v1.md).
DOCUMENTED_LIMIT = 5 * 1024 * 1024
TAG_FAILED = "authentication tag verification failed"


# --- the module's pipeline -----------------------------------------------------------------


class Registry:
    """The real registry, with one shared dropzone connector (lowered limit) and mock."""

    def __init__(self) -> None:
        self.dropzone = DropzoneJsonV1Connector(max_document_bytes=DOC_LIMIT)
        self.mock = MockConnector()
        #: An ERP whose answers the test scripts (type EDI: no real connector registers it).
        self.scripted = FakeConnector()

    def get(self, connector_type: str, /) -> ERPConnectorPort:
        if connector_type == "DROPZONE_JSON_V1":
            return self.dropzone
        if connector_type == "MOCK":
            return self.mock
        if connector_type == "EDI":
            return self.scripted
        return ConnectorRegistry.get(connector_type)  # unknown types raise as in production


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


@dataclass
class Pipe:
    engine: Engine
    bootstrap: str
    topics: TopicNames
    cipher: ConfigCipher
    sftp: SftpServer
    worker: PushWorker
    registry: Registry
    reader: Consumer
    seen: list[Record] = field(default_factory=list)
    good_org: uuid.UUID = field(default_factory=uuid.uuid4)

    # --- writing ---------------------------------------------------------------------------
    def connect(
        self,
        org: uuid.UUID,
        connector_type: str,
        config: Mapping[str, Any] | None = None,
        *,
        blob: bytes | None = None,
        status: str = "ACTIVE",
    ) -> None:
        """Store a connection with plain SQL (so even an unregistered type gets in)."""
        if blob is None:
            blob = self.cipher.encrypt_config(
                dict(config or {}), org_id=org, connector_type=connector_type
            )
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO erp_connection (org_id, connector_type, config_encrypted, status)"
                    " VALUES (:org, :type, :blob, :status)"
                ),
                {"org": org, "type": connector_type, "blob": blob, "status": status},
            )

    def approve(self, order: DraftOrder) -> None:
        factory = make_session_factory(self.engine)
        approve_draft_order(sql_unit_of_work(session_factory=factory), order.org_id, order)

    def produce(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None
    ) -> None:
        """Publish straight to the requests topic, as an upstream service may."""
        producer = EventProducer(producer_config(self.bootstrap))
        producer.produce(self.topics.requests, key, value, headers)
        assert producer.flush(DEADLINE) == 0

    # --- reading ---------------------------------------------------------------------------
    def wait_for(self, what: str, match: Callable[[Record], bool], count: int = 1) -> list[Record]:
        deadline = time.monotonic() + DEADLINE
        while True:
            found = [r for r in self.seen if match(r)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {DEADLINE}s waiting for {what}")
            for msg in self.reader.consume(200, 0.2):
                if msg.error() is None:
                    headers = {
                        str(k): v.decode("utf-8", "replace")
                        for k, v in (msg.headers() or [])
                        if v is not None
                    }
                    self.seen.append(Record(msg.topic(), msg.key(), msg.value(), headers))

    def result(self, order: DraftOrder) -> dict[str, Any]:
        """The one final PushResult of ``order``."""
        key = str(order.id).encode()
        [record] = self.wait_for(
            f"the result of {order.id}",
            lambda r: r.topic == self.topics.results and r.key == key,
        )
        return decode_push_result(record.value)

    def dead(self, key: bytes | None, what: str = "a dead letter") -> Record:
        [record] = self.wait_for(what, lambda r: r.topic == self.topics.dlq and r.key == key)
        return record

    def push_log(self, order: DraftOrder) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT attempt, status, error_message FROM erp_push_log"
                        " WHERE draft_order_id = :id ORDER BY attempt"
                    ),
                    {"id": order.id},
                )
            )

    # --- checks ----------------------------------------------------------------------------
    def assert_request_dead_lettered(
        self,
        order: DraftOrder,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        error_class: str,
        reason: str,
    ) -> Record:
        """Publish a request the worker cannot handle (key = the order id): it lands on
        the DLQ with ``error_class`` and ``reason``, nothing is recorded for the order,
        and the next good order on the same partition flows."""
        key = str(order.id).encode()
        self.produce(key, value, headers)
        dead = self.dead(key)
        assert dead.value == value  # the original bytes, kept for replay
        assert dead.headers["error_class"] == error_class, dead.headers
        assert reason in dead.headers["error_message"]
        assert dead.headers["original_topic"] == self.topics.requests
        assert self.push_log(order) == []
        self.assert_next_good_order_flows()
        return dead

    def assert_next_good_order_flows(self) -> None:
        """A good order after the bad input, on the same (only) partition, still succeeds."""
        good = order_for(self.good_org)
        self.approve(good)
        assert self.result(good)["status"] == "SUCCESS"
        assert [row.status for row in self.push_log(good)] == ["SUCCESS"]

    def assert_failed_cleanly(self, order: DraftOrder, error_class: str, reason: str) -> None:
        """FAILED result, a dead letter and a FAILED push log row, all saying ``reason``."""
        result = self.result(order)
        assert (result["status"], result["error_class"]) == ("FAILED", error_class)
        assert reason in result["error_message"]
        dead = self.dead(str(order.id).encode())
        assert dead.headers["error_class"] == error_class
        assert reason in dead.headers["error_message"]
        assert dead.headers["original_topic"] == self.topics.requests
        rows = self.push_log(order)
        assert rows[-1].status == "FAILED"
        assert reason in rows[-1].error_message
        self.assert_next_good_order_flows()

    def dropzone_org(self, **overrides: Any) -> uuid.UUID:
        """A new organisation with a DROPZONE_JSON_V1 connection to the test's sshd."""
        org = uuid.uuid4()
        self.connect(org, "DROPZONE_JSON_V1", dropzone_config(self.sftp, **overrides))
        return org

    def assert_push_fails(
        self, org: uuid.UUID, error_class: str, reason: str, **order_fields: Any
    ) -> DraftOrder:
        """Approve an order of ``org``: it fails cleanly (see ``assert_failed_cleanly``)."""
        order = order_for(org, **order_fields)
        self.approve(order)
        self.assert_failed_cleanly(order, error_class, reason)
        return order

    def dropzone_files(self, org: uuid.UUID) -> list[Path]:
        root = Path(self.sftp.dropzone_dir)
        return sorted(p for p in root.rglob("*") if p.is_file() and str(org) in str(p))


def order_for(org: uuid.UUID, **overrides: Any) -> DraftOrder:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "org_id": org,
        "order_number": f"SO-{uuid.uuid4().hex[:8]}",
        "customer_code": "CUST-1",
        "lines": (OrderLine(1, "SKU-1", Decimal("2"), Decimal("9.99")),),
    }
    values.update(overrides)
    return DraftOrder(**values)


def dropzone_config(server: SftpServer, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "private_key": server.private_key_pem,
        "remote_dir": server.dropzone_dir,
        "host_key": server.host_key_line,
        "timeout_s": 10,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def request_headers(order: DraftOrder, **overrides: Any) -> list[tuple[str, bytes]]:
    now = datetime.now(UTC)
    headers = EventHeaders(
        event_id=uuid.uuid4(),
        event_type="PushRequested",
        idempotency_key=generate_idempotency_key(order.org_id, order.id, 0),
        org_id=order.org_id,
        attempt=0,
        occurred_at=now,
        traceparent=new_traceparent(),
    )
    pairs = [(k, v) for k, v in build_headers(headers) if k not in overrides]
    return pairs + [(k, v) for k, v in overrides.items() if v is not None]


def request_value(order: DraftOrder, attempt: int = 0) -> bytes:
    now = datetime.now(UTC)
    return encode_push_requested(
        push_requested_record(
            order,
            event_id=uuid.uuid4(),
            idempotency_key=generate_idempotency_key(order.org_id, order.id, max(attempt, 0)),
            attempt=attempt,
            occurred_at=now,
            approved_at=now,
        )
    )


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def stranger_key() -> str:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )


@pytest.fixture(scope="module")
def pipe(
    migrated_db_url: str, engine: Engine, kafka_bootstrap_servers: str, sftp_server: SftpServer
) -> Iterator[Pipe]:
    prefix = f"it-bad-{uuid.uuid4().hex[:10]}"
    topics = TopicNames(prefix, retry_tiers=2)
    cipher = ConfigCipher(MasterKeyring.from_hex(MASTER_KEY))
    registry = Registry()
    config = WorkerConfig(
        bootstrap_servers=kafka_bootstrap_servers,
        database_url=migrated_db_url,
        topic_prefix=prefix,
        group_id=f"{prefix}-group",
        partitions=1,
        worker=WorkerSettings(
            concurrency=2,
            retry=RetrySettings(max_retries=1, retry_delay_base=0.2, retry_tiers=2),
            drain_timeout_s=10,
        ),
    )
    worker = build_worker(config, registry=registry, cipher=cipher)
    relay = build_relay(
        RelayConfig(
            database_url=migrated_db_url,
            bootstrap_servers=kafka_bootstrap_servers,
            topic_prefix=prefix,
            partitions=1,
            retry_tiers=2,
        ),
        RelaySettings(idle_poll_s=0.1),
    )
    reader = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap_servers,
            "group.id": f"{prefix}-reader",
            "enable.auto.commit": False,
        }
    )
    reader.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in topics.all()])
    pipe = Pipe(
        engine, kafka_bootstrap_servers, topics, cipher, sftp_server, worker, registry, reader
    )
    pipe.connect(pipe.good_org, "MOCK", {"mode": "success"})
    try:
        with relay_and_worker(relay, worker, config, DEADLINE):
            yield pipe
    finally:
        reader.close()
        registry.dropzone.close()
        delete_topics(kafka_bootstrap_servers, topics.all())


# --- messages the worker cannot understand ------------------------------------------------


def test_undecodable_message_is_dead_lettered_and_the_partition_moves_on(pipe: Pipe) -> None:
    order = order_for(uuid.uuid4())
    value = b"\x00 certainly not avro"
    pipe.assert_request_dead_lettered(
        order,
        value,
        request_headers(order),
        "UndecodableMessage",
        "Not Avro single-object encoding",
    )


def test_unknown_schema_is_dead_lettered_with_its_fingerprint(pipe: Pipe) -> None:
    order = order_for(uuid.uuid4())
    fingerprint = bytes.fromhex("0123456789abcdef")
    value = MAGIC + fingerprint + b"\x02body"
    pipe.assert_request_dead_lettered(
        order, value, request_headers(order), "UnknownSchema", fingerprint.hex()
    )


def test_message_written_without_a_required_field_is_dead_lettered(pipe: Pipe) -> None:
    """An upstream writer whose PushRequested lacks the required ``order`` field.

    Without a schema registry the writer's schema is known by its fingerprint only:
    a schema lacking a required field is a schema this reader does not know.
    """
    order = order_for(uuid.uuid4())
    schema = schema_json("PushRequested")
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "order"]
    record = {k: v for k, v in _avro_request(order).items() if k != "order"}
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(schema), record)
    fingerprint = fingerprint_of(schema)
    value = MAGIC + fingerprint + body.getvalue()
    pipe.assert_request_dead_lettered(
        order, value, request_headers(order), "UnknownSchema", fingerprint.hex()
    )


@pytest.mark.parametrize(
    ("name", "raw", "error_class"),
    [
        ("idempotency_key", None, "MissingHeaderError"),
        ("attempt", b"\xff\xfe", "InvalidHeaderError"),
        ("org_id", b"../../etc", "InvalidHeaderError"),
        ("occurred_at", b"yesterday", "InvalidHeaderError"),
    ],
)
def test_missing_or_garbled_header_is_dead_lettered(
    pipe: Pipe, name: str, raw: bytes | None, error_class: str
) -> None:
    order = order_for(uuid.uuid4())
    headers = [(k, v) for k, v in request_headers(order) if k != name]
    if raw is not None:
        headers.append((name, raw))
    pipe.assert_request_dead_lettered(order, request_value(order), headers, error_class, name)


def test_empty_message_without_key_is_dead_lettered(pipe: Pipe) -> None:
    order = order_for(uuid.uuid4())
    marker = uuid.uuid4().hex
    headers = request_headers(order, traceparent=None, event_type=None)
    pipe.produce(None, None, [*headers, ("marker", marker.encode())])
    [dead] = pipe.wait_for(
        "the dead letter of an empty message",
        lambda r: r.topic == pipe.topics.dlq and r.headers.get("marker") == marker,
    )
    assert dead.key is None and dead.value is None
    assert dead.headers["error_message"]
    pipe.assert_next_good_order_flows()


def test_non_utf8_bytes_in_an_order_field_are_dead_lettered(pipe: Pipe) -> None:
    order = order_for(uuid.uuid4(), notes="NOTES-XXXX")
    value = request_value(order)
    assert value.count(b"NOTES-XXXX") == 1
    value = value.replace(b"NOTES-XXXX", b"NOTES-\xff\xfe\xc3\x28")  # same length
    pipe.assert_request_dead_lettered(
        order, value, request_headers(order), "UndecodableMessage", "UnicodeDecodeError"
    )


@pytest.mark.parametrize(
    ("fields", "attempt", "reason"),
    [
        ({"notes": "before\x00after"}, 0, "order.notes contains a NUL character"),
        (
            {"lines": (OrderLine(1, "P", Decimal("9E+999999"), Decimal("9E+999999")),)},
            0,
            "the order total cannot be computed",
        ),
        ({}, -1, "attempt is -1, must be >= 0"),
    ],
    ids=["nul", "total-overflows", "negative-attempt"],
)
def test_request_that_cannot_be_recorded_is_dead_lettered_not_retried_for_ever(
    pipe: Pipe, fields: dict[str, Any], attempt: int, reason: str
) -> None:
    """These made the push-log claim raise, and the worker retried them in front of the
    partition for ever (PostgreSQL refuses U+0000; the recorded total overflowed; a
    negative attempt has no idempotency key)."""
    org = uuid.uuid4()
    pipe.connect(org, "MOCK", {"mode": "success"})
    order = order_for(org, **fields)
    value = request_value(order, attempt)
    pipe.assert_request_dead_lettered(
        order, value, request_headers(order), "InvalidMessage", reason
    )
    assert pipe.registry.mock.calls.get(export_key(org, order.id), 0) == 0


@pytest.mark.parametrize(
    "bad_id",
    ["../../../../../../../etc/passwd.json", "/etc/passwd\x00" + "a" * 24],
)
def test_a_path_in_the_draft_order_id_never_reaches_the_dropzone(pipe: Pipe, bad_id: str) -> None:
    """The id builds the file name; a request whose id is a path is refused before any I/O."""
    org = pipe.dropzone_org()
    order = order_for(org)
    good_id = str(order.id).encode()
    assert len(bad_id.encode()) == len(good_id)  # same length: the Avro framing stays valid
    value = request_value(order).replace(good_id, bad_id.encode())
    pipe.assert_request_dead_lettered(
        order, value, request_headers(order), "UndecodableMessage", "UUID"
    )
    assert pipe.dropzone_files(org) == []
    assert not list(Path(pipe.sftp.dropzone_dir).parent.rglob("passwd*"))


def _avro_request(order: DraftOrder) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "event_id": str(uuid.uuid4()),
        "org_id": str(order.org_id),
        "draft_order_id": str(order.id),
        "idempotency_key": generate_idempotency_key(order.org_id, order.id, 0),
        "attempt": 0,
        "occurred_at": now,
        "approved_at": now,
        "order": order_to_avro(order),
        "schema_version": 1,
    }


# --- connections that cannot be used --------------------------------------------------------


def test_unknown_connector_type_fails_permanently(pipe: Pipe) -> None:
    org = uuid.uuid4()
    pipe.connect(org, "SAP_R3", {"mode": "success"})  # a plugin this worker does not have
    pipe.assert_push_fails(org, "UnknownConnectorType", "Unknown connector type: 'SAP_R3'")


def test_organisation_without_an_active_connection_fails(pipe: Pipe) -> None:
    org = uuid.uuid4()
    pipe.connect(org, "MOCK", {"mode": "success"}, status="DISABLED")
    order = order_for(org)
    pipe.approve(order)
    pipe.assert_failed_cleanly(
        order, "NoActiveConnection", f"No active ERP connection for organisation {org}"
    )
    assert pipe.registry.mock.calls.get(export_key(org, order.id), 0) == 0


def test_config_missing_fields_fails_naming_every_field(pipe: Pipe) -> None:
    org = uuid.uuid4()
    config = dropzone_config(pipe.sftp, host=None, username=None)
    pipe.connect(org, "DROPZONE_JSON_V1", config)
    order = pipe.assert_push_fails(org, "ConfigValidationError", "host: is required")
    assert "username: is required" in pipe.push_log(order)[-1].error_message
    assert [row.attempt for row in pipe.push_log(order)] == [0]  # permanent: not retried


def test_tampered_ciphertext_fails_authentication(pipe: Pipe) -> None:
    org = uuid.uuid4()
    blob = bytearray(
        pipe.cipher.encrypt_config({"mode": "success"}, org_id=org, connector_type="MOCK")
    )
    blob[len(blob) // 2] ^= 0x01
    pipe.connect(org, "MOCK", blob=bytes(blob))
    pipe.assert_push_fails(org, "ConfigDecryptionError", TAG_FAILED)


def test_config_encrypted_under_another_master_key_fails(pipe: Pipe) -> None:
    org = uuid.uuid4()
    other = ConfigCipher(MasterKeyring.from_hex(os.urandom(32).hex()))
    pipe.connect(
        org,
        "MOCK",
        blob=other.encrypt_config({"mode": "success"}, org_id=org, connector_type="MOCK"),
    )
    order = pipe.assert_push_fails(org, "ConfigDecryptionError", TAG_FAILED)
    assert "ENCRYPTION_OLD_KEYS" in pipe.push_log(order)[-1].error_message
    assert MASTER_KEY not in pipe.push_log(order)[-1].error_message


def test_config_blob_moved_to_another_organisation_fails(pipe: Pipe) -> None:
    owner, thief = uuid.uuid4(), uuid.uuid4()
    blob = pipe.cipher.encrypt_config({"mode": "success"}, org_id=owner, connector_type="MOCK")
    pipe.connect(thief, "MOCK", blob=blob)
    order = order_for(thief)
    pipe.approve(order)
    pipe.assert_failed_cleanly(order, "ConfigDecryptionError", TAG_FAILED)
    assert "another organisation" in pipe.push_log(order)[-1].error_message


def _nul_in_error(order: DraftOrder, config: Mapping[str, Any]) -> ExportResult:
    raise ConnectorRejectedError("ERP says: customer\x00unknown")


def _nul_in_metadata(order: DraftOrder, config: Mapping[str, Any]) -> ExportResult:
    return ExportResult(True, order.id, "edi/x", {"erp_reference": "REF\x00-1"})


@pytest.mark.parametrize(
    ("answer", "status", "stored"),
    [(_nul_in_error, "FAILED", "customer\ufffdunknown"), (_nul_in_metadata, "SUCCESS", None)],
    ids=["error-message", "metadata"],
)
def test_erp_answer_with_a_nul_is_recorded_not_retried_for_ever(
    pipe: Pipe, answer: Callable[..., ExportResult], status: str, stored: str | None
) -> None:
    """What an ERP says is stored in the push log: U+0000 in it must not make recording fail."""
    pipe.registry.scripted.handler = answer
    org = uuid.uuid4()
    pipe.connect(org, "EDI", {"host": "edi"})
    order = order_for(org)
    pipe.approve(order)
    result = pipe.result(order)
    assert result["status"] == status
    rows = pipe.push_log(order)
    assert [r.status for r in rows] == [status]
    assert rows[0].error_message == stored if stored is None else stored in rows[0].error_message
    assert len([c for c in pipe.registry.scripted.calls if c[0].id == order.id]) == 1
    pipe.assert_next_good_order_flows()


# --- the SFTP dropzone refusing ---------------------------------------------------------------


def test_sftp_auth_failure_is_permanent(pipe: Pipe) -> None:
    org = pipe.dropzone_org(private_key=stranger_key())
    order = pipe.assert_push_fails(org, "ConnectorConfigError", "authentication failed")
    assert [row.attempt for row in pipe.push_log(order)] == [0]
    assert pipe.dropzone_files(org) == []


def test_sftp_host_key_mismatch_is_permanent_and_a_security_event(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=SECURITY_LOGGER)
    org = uuid.uuid4()
    impostor = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    pipe.connect(org, "DROPZONE_JSON_V1", dropzone_config(pipe.sftp, host_key=impostor))
    order = pipe.assert_push_fails(org, "ConnectorSecurityError", "host key")
    assert [row.attempt for row in pipe.push_log(order)] == [0]
    events = [r for r in caplog.records if r.name == SECURITY_LOGGER]
    assert len(events) == 1
    event = events[0]
    assert event.levelno == logging.WARNING
    assert event.security_event == "ssh_host_key_mismatch"  # type: ignore[attr-defined]
    assert (event.host, event.port) == (pipe.sftp.host, pipe.sftp.port)  # type: ignore[attr-defined]
    assert pipe.dropzone_files(org) == []


def test_connection_refused_is_retried_then_dead_lettered(pipe: Pipe) -> None:
    org = pipe.dropzone_org(port=closed_port())
    order = pipe.assert_push_fails(org, "ConnectorTransientError", "refused")
    rows = pipe.push_log(order)
    assert [(r.attempt, r.status) for r in rows] == [(0, "RETRYING"), (1, "FAILED")]
    assert "gave up after 2 attempts" in rows[-1].error_message
    key = str(order.id).encode()
    [retry] = pipe.wait_for(
        "the retry record", lambda r: r.topic == pipe.topics.retry(1) and r.key == key
    )
    assert retry.headers["error_class"] == "ConnectorTransientError"


# --- order content ----------------------------------------------------------------------------


def test_order_over_the_dropzone_document_limit_is_rejected(pipe: Pipe) -> None:
    org = pipe.dropzone_org()
    pipe.assert_push_fails(
        org, "ConnectorRejectedError", "limit of DROPZONE_JSON_V1", notes="x" * (DOC_LIMIT + 1)
    )
    assert pipe.dropzone_files(org) == []


def test_order_over_the_documented_limit_is_refused_at_approval(
    pipe: Pipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bigger than 5 MiB cannot travel through Kafka: refused at once, nothing written."""
    org = uuid.uuid4()
    huge = order_for(org, notes="n" * (DOCUMENTED_LIMIT + 1))
    with pytest.raises(OrderTooLarge, match=rf"over the {MAX_EVENT_PAYLOAD_BYTES} byte limit"):
        pipe.approve(huge)
    with pipe.engine.connect() as conn:
        for table in ("draft_order", OUTBOX_WRITTEN):
            count = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE org_id = :org"),
                {"org": org},
            ).scalar_one()
            assert count == 0, table
    # The CLI says it in one line.
    path = tmp_path / "huge.json"
    path.write_text(
        json.dumps({"order_number": "SO-HUGE", "customer_code": "C", "notes": huge.notes}),
        encoding="utf-8",
    )
    monkeypatch.setenv("DATABASE_URL", pipe.engine.url.render_as_string(hide_password=False))
    status = main(["orders", "approve", "--org", str(org), "--file", str(path)], out=io.StringIO())
    err = capsys.readouterr().err
    assert status == EXIT_FAILED
    assert err.startswith("orderflow: error: Draft order ") and err.count("\n") == 1
    assert "byte limit of the push pipeline" in err
    pipe.assert_next_good_order_flows()


def test_very_long_strings_are_exported_exactly(pipe: Pipe) -> None:
    org = pipe.dropzone_org()
    long_text = ("Grüße 📦 " * 20_000)[:100_000]
    order = order_for(
        org,
        customer_code="C" * 10_000,
        notes=long_text,
        lines=(OrderLine(1, "P" * 5_000, Decimal("1"), Decimal("1"), "d" * 20_000, "kg"),),
    )
    pipe.approve(order)
    assert pipe.result(order)["status"] == "SUCCESS"
    [file] = pipe.dropzone_files(org)
    assert file.read_bytes() == encode_order_document(order)
    document = json.loads(file.read_text(encoding="utf-8"))
    assert document["notes"] == long_text and document["customer_code"] == "C" * 10_000
    pipe.assert_next_good_order_flows()


def test_very_long_order_number_is_a_clear_error(pipe: Pipe) -> None:
    """The order number is indexed: a huge one is refused, not a raw database error."""
    org = uuid.uuid4()
    order = order_for(org, order_number=os.urandom(8_000).hex())
    with pytest.raises(UnstorableOrder, match="order_number is 16000 bytes, over the limit"):
        pipe.approve(order)
    pipe.assert_next_good_order_flows()


SQL_LOOKING = [
    "'; DROP TABLE erp_push_log; --",
    "1' OR '1'='1",
    "Robert'); DELETE FROM draft_order WHERE ('1'='1",
    "$$; TRUNCATE outbox_event; $$",
    "\\'; SELECT pg_sleep(10); --",
]


def test_sql_looking_strings_are_plain_data(pipe: Pipe) -> None:
    org = pipe.dropzone_org()
    order = order_for(
        org,
        order_number=SQL_LOOKING[0],
        customer_code=SQL_LOOKING[1],
        notes="\n".join(SQL_LOOKING),
        currency=SQL_LOOKING[3][:40],
        lines=(OrderLine(1, SQL_LOOKING[2], Decimal("1"), Decimal("2"), SQL_LOOKING[4]),),
        extra={"x'; DROP TABLE erp_connection; --": SQL_LOOKING[0]},
    )
    pipe.approve(order)
    assert pipe.result(order)["status"] == "SUCCESS"
    [file] = pipe.dropzone_files(org)
    assert file.read_bytes() == encode_order_document(order)
    with pipe.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT order_number, customer_code, notes FROM draft_order WHERE id = :id"),
            {"id": order.id},
        ).one()
        for table in ("erp_push_log", "draft_order", OUTBOX_WRITTEN, "erp_connection"):
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() > 0
    assert tuple(stored) == (order.order_number, order.customer_code, order.notes)
    pipe.assert_next_good_order_flows()


def test_path_traversal_in_order_values_stays_inside_the_dropzone(pipe: Pipe) -> None:
    """Only the two UUIDs build the path: paths in any other value are just text."""
    org = pipe.dropzone_org()
    order = order_for(
        org,
        order_number="../../../../etc/passwd",
        customer_code="/etc/shadow",
        notes="..\\..\\windows\\system32\\x.json",
        lines=(OrderLine(1, "../x/./y", Decimal("1"), Decimal("1"), "/abs/path", "../kg"),),
        extra={"path": "../../../../tmp/evil", "../key": "/"},
    )
    # A NUL (the classic path truncation) cannot even be approved: PostgreSQL cannot store it.
    with pytest.raises(UnstorableOrder, match=r"lines\[0\]\.product_code contains a NUL"):
        pipe.approve(replace(order, lines=(OrderLine(1, "x\x00/../y", Decimal(1), Decimal(1)),)))
    pipe.approve(order)
    assert pipe.result(order)["status"] == "SUCCESS"
    expected = Path(pipe.sftp.dropzone_dir) / str(org) / f"{order.id}.json"
    assert pipe.dropzone_files(org) == [expected]
    assert expected.read_bytes() == encode_order_document(order)
    pipe.assert_next_good_order_flows()


@pytest.mark.parametrize(
    ("remote_dir", "reason"),
    [
        ("{zone}/../../..", "remote_dir: must not contain '..' segments"),
        ("{zone}/\x00/x", "remote_dir: "),
    ],
)
def test_path_traversal_in_remote_dir_is_a_config_error(
    pipe: Pipe, remote_dir: str, reason: str
) -> None:
    org = uuid.uuid4()
    config = dropzone_config(pipe.sftp, remote_dir=remote_dir.format(zone=pipe.sftp.dropzone_dir))
    pipe.connect(org, "DROPZONE_JSON_V1", config)
    pipe.assert_push_fails(org, "ConfigValidationError", reason)
    assert pipe.dropzone_files(org) == []
