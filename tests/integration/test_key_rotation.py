"""``orderflow keys rewrap`` against a real PostgreSQL: rotation, binding of unbound blobs,
format 1 blobs, idempotence, dry run, failures."""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from adapters.crypto.encryption import (
    BlobForm,
    ConfigCipher,
    EncryptionError,
    blob_form,
    blob_is_bound,
    blob_key_id,
)
from adapters.crypto.keys import REQUIRE_BOUND_ENV, MasterKeyring, key_id_of
from adapters.postgres.engine import make_engine
from adapters.postgres.models import ERPConnection
from entrypoints.cli import EXIT_FAILED, EXIT_OK, main
from tests import legacy_blobs

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
    monkeypatch: pytest.MonkeyPatch,
    db: str,
    primary: bytes,
    old: bytes | None,
    *argv: str,
    require_bound: str | None = None,
) -> tuple[int, dict[str, object]]:
    monkeypatch.setenv("DATABASE_URL", db)
    if require_bound is None:
        monkeypatch.delenv(REQUIRE_BOUND_ENV, raising=False)
    else:
        monkeypatch.setenv(REQUIRE_BOUND_ENV, require_bound)
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


def add_unbound_rows(
    engine: Engine, cipher: ConfigCipher, contexts: list[tuple[uuid.UUID, str]]
) -> list[uuid.UUID]:
    """Rows as the seed writes them: ``ERPConnection(...)`` with ``encrypt_config(config)``."""
    with Session(engine) as session:
        rows = [
            ERPConnection(
                org_id=org,
                connector_type=kind,
                config_encrypted=cipher.encrypt_config({"mode": "success", "api_key": MARKER}),
                status="ACTIVE",
            )
            for org, kind in contexts
        ]
        session.add_all(rows)
        session.commit()
        return [row.id for row in rows]


def test_rewrap_binds_unbound_rows_to_their_own_org_and_type_once(
    engine: Engine,
    migrated_db_url: str,
    keys: tuple[bytes, bytes],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key_a, _ = keys
    cipher_a = ConfigCipher(MasterKeyring(key_a))
    contexts = [(uuid.uuid4(), kind) for kind in ("MOCK", "DROPZONE_JSON_V1", "MOCK", "MOCK")]
    unbound = add_unbound_rows(engine, cipher_a, contexts)
    already = insert(engine, cipher_a, uuid.uuid4())
    before = blobs(engine)
    assert not any(blob_is_bound(before[i]) for i in unbound)

    status, dry = run(monkeypatch, migrated_db_url, key_a, None, "--dry-run", "--batch-size", "3")
    assert status == EXIT_OK
    assert (dry["would_bind"], dry["would_rewrap"], dry["bound"]) == (4, 0, 0)
    assert blobs(engine) == before

    # Works with the strict setting on: it is the fix its error message names.
    status, first = run(monkeypatch, migrated_db_url, key_a, None, require_bound="1")
    assert status == EXIT_OK
    assert (first["scanned"], first["bound"], first["rewrapped"]) == (5, 4, 0)
    assert (first["already_primary"], first["failed"]) == (1, [])
    after = blobs(engine)
    assert after[already] == before[already]
    strict = ConfigCipher(MasterKeyring(key_a), require_bound=True)
    for row_id, (org, kind) in zip(unbound, contexts, strict=True):
        blob = after[row_id]
        assert blob_is_bound(blob) and blob_key_id(blob) == key_id_of(key_a)
        assert strict.decrypt_config(blob, org_id=org, connector_type=kind)["api_key"] == MARKER
        for other_org, other_kind in [(uuid.uuid4(), kind), (None, None)]:
            with pytest.raises(EncryptionError, match="authentication tag verification failed"):
                strict.decrypt_config(blob, org_id=other_org, connector_type=other_kind)

    status, second = run(monkeypatch, migrated_db_url, key_a, None)
    assert status == EXIT_OK
    assert (second["bound"], second["rewrapped"], second["already_primary"]) == (0, 0, 5)
    assert blobs(engine) == after

    captured = capsys.readouterr()
    assert MARKER not in captured.out + captured.err + caplog.text
    assert key_a.hex() not in captured.out + captured.err + caplog.text


def test_rewrap_during_a_rotation_binds_and_moves_keys_in_one_pass(
    engine: Engine, migrated_db_url: str, keys: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_a, key_b = keys
    cipher_a = ConfigCipher(MasterKeyring(key_a))
    contexts = [(uuid.uuid4(), "MOCK") for _ in range(2)]
    unbound = add_unbound_rows(engine, cipher_a, contexts)
    bound = [insert(engine, cipher_a, uuid.uuid4()) for _ in range(3)]

    status, report = run(monkeypatch, migrated_db_url, key_b, key_a, "--batch-size", "2")
    assert status == EXIT_OK
    # Each row counts once: unbound ones as bound, bound ones as rewrapped.
    assert (report["bound"], report["rewrapped"], report["scanned"]) == (2, 3, 5)
    after = blobs(engine)
    only_b = ConfigCipher(MasterKeyring(key_b))
    for row_id in [*unbound, *bound]:
        assert blob_is_bound(after[row_id]) and blob_key_id(after[row_id]) == key_id_of(key_b)
    for row_id, (org, kind) in zip(unbound, contexts, strict=True):
        assert only_b.decrypt_config(after[row_id], org_id=org, connector_type=kind)["mode"]


def test_rewrap_rewrites_format_1_rows_in_the_current_format(
    engine: Engine, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blobs stored by the format 1 code: bound to their row, or with the empty binding."""
    ids = []
    with Session(engine) as session:
        for blob in (legacy_blobs.BOUND, legacy_blobs.UNBOUND):
            row = ERPConnection(
                org_id=legacy_blobs.ORG,
                connector_type=legacy_blobs.CTYPE,
                config_encrypted=blob,
                status="DISABLED",
            )
            session.add(row)
            session.flush()
            ids.append(row.id)
        session.commit()
    key = bytes.fromhex(legacy_blobs.KEY)

    status, report = run(monkeypatch, migrated_db_url, key, None)
    assert status == EXIT_OK
    assert (report["rewrapped"], report["bound"], report["failed"]) == (1, 1, [])
    after = blobs(engine)
    cipher = ConfigCipher(MasterKeyring(key))
    for row_id in ids:
        assert blob_form(after[row_id]) is BlobForm.BOUND
        config = cipher.decrypt_config(
            after[row_id], org_id=legacy_blobs.ORG, connector_type=legacy_blobs.CTYPE
        )
        assert config == legacy_blobs.CONFIG

    status, again = run(monkeypatch, migrated_db_url, key, None)
    assert (again["rewrapped"], again["bound"], again["already_primary"]) == (0, 0, 2)
