"""Bound and unbound config blobs, ``ENCRYPTION_REQUIRE_BOUND``, and format 1 blobs.

The seed encrypts with ``EncryptionService.encrypt_config(config)`` (no context): that
blob must open wherever it is stored. A blob made with org_id and connector_type must
open only there. The form byte in the header says which and cannot be edited unnoticed.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.crypto.encryption import (
    LEGACY_FORMAT_VERSION,
    LEGACY_HEADER_BYTES,
    BlobForm,
    ConfigCipher,
    EncryptionError,
    EncryptionService,
    EncryptionSettingError,
    OpenedConfig,
    UnboundConfigError,
    blob_form,
    blob_is_bound,
    blob_key_id,
)
from adapters.crypto.keys import (
    MASTER_KEY_ENV,
    OLD_KEYS_ENV,
    REQUIRE_BOUND_ENV,
    MasterKeyring,
    key_id_of,
)
from tests import legacy_blobs

TAG_FAILED = "authentication tag verification failed"
KEY_A = "a1" * 32
KEY_B = "b2" * 32
ORG = uuid.UUID("0b6f3c1e-0d1a-4a57-9a51-3f5a0f2f1e01")
OTHER_ORG = uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")
CTYPE = "DROPZONE_JSON_V1"
SECRET = "pa55-W0rd-never-in-any-message"
CONFIG: dict[str, Any] = {"host": "sftp.example.com", "port": 22, "password": SECRET}

LEGACY_BOUND = legacy_blobs.BOUND
LEGACY_UNBOUND = legacy_blobs.UNBOUND


def cipher(primary: str = KEY_A, *older: str, require_bound: bool = False) -> ConfigCipher:
    return ConfigCipher(
        MasterKeyring.from_hex(primary, ",".join(older) or None), require_bound=require_bound
    )


def bound_blob(c: ConfigCipher | None = None) -> bytes:
    return (c or cipher()).encrypt_config(CONFIG, org_id=ORG, connector_type=CTYPE)


def unbound_blob(c: ConfigCipher | None = None) -> bytes:
    return (c or cipher()).encrypt_config(CONFIG)


def with_byte(blob: bytes, position: int, value: int) -> bytes:
    edited = bytearray(blob)
    edited[position] = value
    return bytes(edited)


# --- the two forms ----------------------------------------------------------------------


def test_the_header_says_which_form() -> None:
    assert blob_is_bound(bound_blob()) is True
    assert blob_form(bound_blob()) is BlobForm.BOUND
    assert blob_is_bound(unbound_blob()) is False
    assert blob_form(unbound_blob()) is BlobForm.UNBOUND


def test_unbound_blob_decrypts_with_any_context_or_none() -> None:
    c = cipher()
    blob = unbound_blob(c)
    assert c.decrypt_config(blob) == CONFIG
    assert c.decrypt_config(blob, org_id=ORG, connector_type=CTYPE) == CONFIG
    assert c.decrypt_config(blob, org_id=OTHER_ORG, connector_type="MOCK") == CONFIG


@settings(max_examples=50)
@given(org=st.uuids(), ctype=st.text(min_size=1, max_size=40))
def test_unbound_blob_opens_in_every_context(org: uuid.UUID, ctype: str) -> None:
    c = cipher()
    assert c.decrypt_config(unbound_blob(c), org_id=org, connector_type=ctype) == CONFIG


def test_bound_blob_moved_to_another_org_or_type_or_no_context_fails() -> None:
    c = cipher()
    blob = bound_blob(c)
    assert c.decrypt_config(blob, org_id=ORG, connector_type=CTYPE) == CONFIG
    for org, ctype in [(OTHER_ORG, CTYPE), (ORG, "MOCK"), (None, None)]:
        with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}") as excinfo:
            c.decrypt_config(blob, org_id=org, connector_type=ctype)
        assert SECRET not in str(excinfo.value)


def test_the_seeds_call_through_encryption_service_is_unbound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, KEY_A)
    monkeypatch.delenv(OLD_KEYS_ENV, raising=False)
    monkeypatch.delenv(REQUIRE_BOUND_ENV, raising=False)
    encrypted = EncryptionService.encrypt_config({"api_key": "secret123"})
    assert not blob_is_bound(encrypted)
    assert EncryptionService.decrypt_config(encrypted) == {"api_key": "secret123"}
    assert EncryptionService.decrypt_config(encrypted, org_id=ORG, connector_type="MOCK") == {
        "api_key": "secret123"
    }


# --- tampering with the form byte -------------------------------------------------------


def test_bound_blob_relabelled_unbound_fails_everywhere() -> None:
    """Dropping the binding by editing the header must not let the blob open elsewhere."""
    c = cipher()
    forged = with_byte(bound_blob(c), 4, 0x00)
    assert blob_form(forged) is BlobForm.UNBOUND
    for org, ctype in [(None, None), (ORG, CTYPE), (OTHER_ORG, CTYPE)]:
        with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
            c.decrypt_config(forged, org_id=org, connector_type=ctype)


def test_unbound_blob_relabelled_bound_fails() -> None:
    c = cipher()
    forged = with_byte(unbound_blob(c), 4, 0x01)
    for org, ctype in [(None, None), (ORG, CTYPE)]:
        with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
            c.decrypt_config(forged, org_id=org, connector_type=ctype)


@pytest.mark.parametrize("form", [0x02, 0x80, 0xFF])
def test_unknown_form_byte_is_refused_by_value(form: int) -> None:
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}: unknown encrypted config form"):
        cipher().decrypt_config(with_byte(unbound_blob(), 4, form))
    with pytest.raises(EncryptionError, match="unknown encrypted config form"):
        blob_is_bound(with_byte(unbound_blob(), 4, form))


# --- half a context and bad context values ----------------------------------------------


@pytest.mark.parametrize(
    ("context", "given_name"),
    [({"org_id": ORG}, "org_id"), ({"connector_type": CTYPE}, "connector_type")],
)
def test_half_a_context_is_refused(context: dict[str, Any], given_name: str) -> None:
    c = cipher()
    expected = f"pass both .* or neither .*, got only {given_name}$"
    with pytest.raises(EncryptionError, match=expected):
        c.encrypt_config(CONFIG, **context)
    with pytest.raises(EncryptionError, match=expected):
        c.decrypt_config(unbound_blob(c), **context)


def test_bad_org_id_and_empty_connector_type_are_refused() -> None:
    c = cipher()
    with pytest.raises(EncryptionError, match="org_id must be a UUID, got 'org-1'"):
        c.encrypt_config(CONFIG, org_id="org-1", connector_type=CTYPE)
    with pytest.raises(EncryptionError, match="connector_type must be a non-empty string"):
        c.encrypt_config(CONFIG, org_id=ORG, connector_type="")


# --- ENCRYPTION_REQUIRE_BOUND -----------------------------------------------------------


def test_require_bound_refuses_to_read_an_unbound_blob_and_says_how_to_fix() -> None:
    strict = cipher(require_bound=True)
    with pytest.raises(UnboundConfigError) as excinfo:
        strict.decrypt_config(unbound_blob(), org_id=ORG, connector_type=CTYPE)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, EncryptionError)
    assert f"{REQUIRE_BOUND_ENV}=1" in message
    assert "orderflow keys rewrap" in message
    assert SECRET not in message
    assert strict.decrypt_config(bound_blob(), org_id=ORG, connector_type=CTYPE) == CONFIG


def test_require_bound_refuses_to_make_an_unbound_blob() -> None:
    strict = cipher(require_bound=True)
    with pytest.raises(UnboundConfigError, match=f"^{REQUIRE_BOUND_ENV}=1 refuses to make"):
        strict.encrypt_config(CONFIG)
    assert blob_is_bound(strict.encrypt_config(CONFIG, org_id=ORG, connector_type=CTYPE))


def test_require_bound_still_lets_rewrap_bind_an_unbound_blob() -> None:
    strict = cipher(require_bound=True)
    rebound = strict.rewrap(unbound_blob(), org_id=ORG, connector_type=CTYPE)
    assert blob_is_bound(rebound)
    assert strict.decrypt_config(rebound, org_id=ORG, connector_type=CTYPE) == CONFIG
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
        strict.decrypt_config(rebound, org_id=OTHER_ORG, connector_type=CTYPE)


@pytest.mark.parametrize(
    ("value", "strict"), [(None, False), ("", False), ("0", False), ("1", True), (" 1\n", True)]
)
def test_require_bound_from_the_environment(value: str | None, strict: bool) -> None:
    env = {MASTER_KEY_ENV: KEY_A}
    if value is not None:
        env[REQUIRE_BOUND_ENV] = value
    assert ConfigCipher.from_env(env).require_bound is strict


@pytest.mark.parametrize("value", ["yes", "true", "2", "on", "01"])
def test_any_other_require_bound_value_is_a_clear_error(value: str) -> None:
    with pytest.raises(EncryptionSettingError) as excinfo:
        ConfigCipher.from_env({MASTER_KEY_ENV: KEY_A, REQUIRE_BOUND_ENV: value})
    assert str(excinfo.value) == f"{REQUIRE_BOUND_ENV} must be 0 or 1 (or unset), got {value!r}"


def test_encryption_service_follows_a_changed_require_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, KEY_A)
    monkeypatch.delenv(OLD_KEYS_ENV, raising=False)
    monkeypatch.delenv(REQUIRE_BOUND_ENV, raising=False)
    blob = EncryptionService.encrypt_config(CONFIG)
    assert EncryptionService.decrypt_config(blob) == CONFIG
    monkeypatch.setenv(REQUIRE_BOUND_ENV, "1")
    with pytest.raises(UnboundConfigError):
        EncryptionService.decrypt_config(blob)
    with pytest.raises(UnboundConfigError):
        EncryptionService.encrypt_config(CONFIG)
    monkeypatch.setenv(REQUIRE_BOUND_ENV, "0")
    assert EncryptionService.decrypt_config(blob) == CONFIG


# --- format 1 blobs (stored before the form byte) ---------------------------------------


def test_legacy_fixtures_match_this_modules_context() -> None:
    assert (legacy_blobs.KEY, legacy_blobs.ORG, legacy_blobs.CTYPE) == (KEY_A, ORG, CTYPE)
    assert legacy_blobs.CONFIG == CONFIG


def test_legacy_blobs_have_the_format_1_header() -> None:
    for blob in (LEGACY_BOUND, LEGACY_UNBOUND):
        assert blob[3] == LEGACY_FORMAT_VERSION == 1
        assert blob_key_id(blob) == blob[4:LEGACY_HEADER_BYTES] == key_id_of(bytes.fromhex(KEY_A))
        assert blob_form(blob) is BlobForm.LEGACY
        assert blob_is_bound(blob) is False  # the header cannot say


def test_legacy_bound_blob_reads_as_before_and_only_in_its_context() -> None:
    c = cipher()
    assert c.decrypt_config(LEGACY_BOUND, org_id=ORG, connector_type=CTYPE) == CONFIG
    assert c.open_config(LEGACY_BOUND, org_id=ORG, connector_type=CTYPE).bound is True
    assert (
        cipher(require_bound=True).decrypt_config(LEGACY_BOUND, org_id=ORG, connector_type=CTYPE)
        == CONFIG
    )
    for org, ctype in [(OTHER_ORG, CTYPE), (ORG, "MOCK"), (None, None)]:
        with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
            c.decrypt_config(LEGACY_BOUND, org_id=org, connector_type=ctype)


def test_legacy_empty_binding_blob_reads_as_unbound() -> None:
    c = cipher()
    assert c.decrypt_config(LEGACY_UNBOUND) == CONFIG
    assert c.decrypt_config(LEGACY_UNBOUND, org_id=OTHER_ORG, connector_type="MOCK") == CONFIG
    assert c.open_config(LEGACY_UNBOUND, org_id=ORG, connector_type=CTYPE).bound is False
    with pytest.raises(UnboundConfigError, match="orderflow keys rewrap"):
        cipher(require_bound=True).decrypt_config(LEGACY_UNBOUND, org_id=ORG, connector_type=CTYPE)


@pytest.mark.parametrize("blob", [LEGACY_BOUND, LEGACY_UNBOUND], ids=["bound", "unbound"])
def test_legacy_blobs_need_rewrap_and_come_out_bound_in_format_2(blob: bytes) -> None:
    c = cipher()
    assert c.needs_rewrap(blob)
    fresh = c.rewrap(blob, org_id=ORG, connector_type=CTYPE)
    assert blob_form(fresh) is BlobForm.BOUND
    assert not c.needs_rewrap(fresh)
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
        c.decrypt_config(fresh, org_id=OTHER_ORG, connector_type=CTYPE)


@settings(max_examples=100)
@given(blob=st.sampled_from([LEGACY_BOUND, LEGACY_UNBOUND]), data=st.data())
def test_any_bit_flip_in_a_legacy_blob_fails(blob: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(blob) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    flipped = bytearray(blob)
    flipped[position] ^= 1 << bit
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}") as excinfo:
        cipher().decrypt_config(bytes(flipped), org_id=ORG, connector_type=CTYPE)
    assert SECRET not in str(excinfo.value)


# --- what rewrap and reprs show --------------------------------------------------------


def test_needs_rewrap_covers_unbound_blobs_and_other_keys() -> None:
    rotated = cipher(KEY_B, KEY_A)
    assert rotated.needs_rewrap(unbound_blob(rotated))
    assert rotated.needs_rewrap(bound_blob(cipher(KEY_A)))
    assert not rotated.needs_rewrap(bound_blob(rotated))


def test_opened_config_and_cipher_reprs_show_no_secret() -> None:
    opened = cipher().open_config(bound_blob(), org_id=ORG, connector_type=CTYPE)
    assert isinstance(opened, OpenedConfig)
    assert opened.config == CONFIG and opened.bound and opened.version == 2
    assert SECRET not in repr(opened)
    assert "require_bound=True" in repr(cipher(require_bound=True))
    assert KEY_A not in repr(cipher(require_bound=True))
