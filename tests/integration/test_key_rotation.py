"""``orderflow keys rewrap`` against a real PostgreSQL: rotation, idempotence, dry run, failures."""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, text

from adapters.crypto.encryption import ConfigCipher, blob_key_id
from adapters.crypto.keys import MasterKeyring, key_id_of
from adapters.postgres.engine import make_engine
from adapters.postgres.models import ERPConnection
from entrypoints.cli import EXIT_FAILED, EXIT_OK, main

MARKER = "rewrap-marker-secret-5c1e8"


@pytest.fixture
def engine(migrated_db_url: str) -> Iterator[Engine]:
    eng = make_engine(migrated_db_url)
    with eng.begin() as conn:
        conn.execute(text("TRUNCATE erp_connection"))
    yield eng
    eng.dispose()


@pytest.fixture
def keys() -> tuple[bytes, bytes]:
    return os.urandom(32), os.urandom(32)


def insert(engine: Engine, cipher: ConfigCipher, org: uuid.UUID, kind: str = "MOCK") -> uuid.UUID:
    blob = cipher.encrypt_config(
        {"mode": "success", "api_key": MARKER}, org_id=org, connector_type=kind
    )
    row_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            ERPConnection.__table__.insert().values(
                id=row_id,
                org_id=org,
                connector_type=kind,
                config_encrypted=blob,
                status="DISABLED",
            )
        )
    return row_id


def blobs(engine: Engine) -> dict[uuid.UUID, bytes]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(ERPConnection.id, ERPConnection.config_encrypted).order_by(ERPConnection.id)
        ).all()
    return {r.id: bytes(r.config_encrypted) for r in rows}


def run(
    monkeypatch: pytest.MonkeyPatch, db: str, primary: bytes, old: bytes | None, *argv: str
) -> tuple[int, dict[str, object]]:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", primary.hex())
    if old is None:
        monkeypatch.delenv("ENCRYPTION_OLD_KEYS", raising=False)
    else:
        monkeypatch.setenv("ENCRYPTION_OLD_KEYS", old.hex())
    out = io.StringIO()
    status = main(["keys", "rewrap", *argv], out=out)
    text_out = out.getvalue()
    assert MARKER not in text_out
    return status, json.loads(text_out)


def test_rewrap_moves_every_row_to_the_primary_key_once(
    engine: Engine,
    migrated_db_url: str,
    keys: tuple[bytes, bytes],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key_a, key_b = keys
    cipher_a = ConfigCipher(MasterKeyring(key_a))
    orgs = [uuid.uuid4() for _ in range(5)]
    ids = [insert(engine, cipher_a, org) for org in orgs]
    before = blobs(engine)

    status, dry = run(monkeypatch, migrated_db_url, key_b, key_a, "--dry-run", "--batch-size", "2")
    assert status == EXIT_OK
    assert dry["would_rewrap"] == 5 and dry["rewrapped"] == 0 and dry["dry_run"] is True
    assert blobs(engine) == before

    status, first = run(monkeypatch, migrated_db_url, key_b, key_a, "--batch-size", "2")
    assert status == EXIT_OK
    assert (first["scanned"], first["rewrapped"], first["failed"]) == (5, 5, [])
    after = blobs(engine)
    assert all(blob_key_id(b) == key_id_of(key_b) for b in after.values())
    only_b = ConfigCipher(MasterKeyring(key_b))
    for row_id, org in zip(ids, orgs, strict=True):
        config = only_b.decrypt_config(after[row_id], org_id=org, connector_type="MOCK")
        assert config["api_key"] == MARKER

    status, second = run(monkeypatch, migrated_db_url, key_b, key_a)
    assert status == EXIT_OK
    assert (second["rewrapped"], second["already_primary"]) == (0, 5)
    assert blobs(engine) == after

    captured = capsys.readouterr()
    assert MARKER not in captured.out + captured.err + caplog.text
    assert key_a.hex() not in captured.out + captured.err + caplog.text
    assert key_b.hex() not in captured.out + captured.err + caplog.text


def test_a_row_that_does_not_decrypt_is_reported_and_the_others_proceed(
    engine: Engine,
    migrated_db_url: str,
    keys: tuple[bytes, bytes],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key_a, key_b = keys
    cipher_a = ConfigCipher(MasterKeyring(key_a))
    good = [insert(engine, cipher_a, uuid.uuid4()) for _ in range(3)]
    # Encrypted under a key nobody configured: cannot be decrypted.
    lost = insert(engine, ConfigCipher(MasterKeyring(os.urandom(32))), uuid.uuid4())
    # Bound to another organisation than its row says: the tag does not verify.
    misbound = insert(engine, cipher_a, uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            ERPConnection.__table__.update()
            .where(ERPConnection.id == misbound)
            .values(org_id=uuid.uuid4())
        )

    status, report = run(monkeypatch, migrated_db_url, key_b, key_a, "--batch-size", "2")
    assert status == EXIT_FAILED
    assert sorted(report["failed"]) == sorted([str(lost), str(misbound)])  # type: ignore[type-var]
    assert report["rewrapped"] == 3
    after = blobs(engine)
    assert all(blob_key_id(after[i]) == key_id_of(key_b) for i in good)

    status, again = run(monkeypatch, migrated_db_url, key_b, key_a)
    assert status == EXIT_FAILED
    assert again["rewrapped"] == 0 and len(again["failed"]) == 2  # type: ignore[arg-type]

    captured = capsys.readouterr()
    assert MARKER not in captured.out + captured.err + caplog.text
