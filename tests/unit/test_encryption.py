"""AES-256-GCM config encryption: blob layout, tamper detection, context binding, rotation.

Bound blobs (made with org_id and connector_type) open only in their context; unbound
ones (the seed's ``encrypt_config(config)``) open anywhere; the header's form byte says
which and is authenticated. Format 1 blobs written before the form byte keep opening.

Every failure must be an ``EncryptionError`` whose text carries the seed's phrase
"authentication tag verification failed" (so operators can grep for it) and never any
key material or config value.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.crypto.encryption import (
    FORMAT_VERSION,
    HEADER_BYTES,
    MAGIC,
    NONCE_BYTES,
    TAG_BYTES,
    ConfigCipher,
    EncryptionError,
    EncryptionService,
    MasterKeyError,
    associated_data,
    blob_key_id,
)
from adapters.crypto.keys import (
    MASTER_KEY_ENV,
    OLD_KEYS_ENV,
    MasterKeyring,
    key_id_of,
)

TAG_FAILED = "authentication tag verification failed"

KEY_A = "a1" * 32
KEY_B = "b2" * 32
KEY_C = "c3" * 32
ORG = uuid.UUID("0b6f3c1e-0d1a-4a57-9a51-3f5a0f2f1e01")
OTHER_ORG = uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")
CTYPE = "DROPZONE_JSON_V1"
SECRET = "pa55-W0rd-never-in-any-message"
CONFIG: dict[str, Any] = {"host": "sftp.example.com", "port": 22, "password": SECRET}


def cipher(primary: str, *older: str, require_bound: bool = False) -> ConfigCipher:
    return ConfigCipher(
        MasterKeyring.from_hex(primary, ",".join(older) or None), require_bound=require_bound
    )


def encrypt(c: ConfigCipher, config: dict[str, Any] | None = None) -> bytes:
    return c.encrypt_config(CONFIG if config is None else config, org_id=ORG, connector_type=CTYPE)


def decrypt(c: ConfigCipher, blob: bytes) -> dict[str, Any]:
    return c.decrypt_config(blob, org_id=ORG, connector_type=CTYPE)


def canonical(config: dict[str, Any]) -> bytes:
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
json_configs = st.dictionaries(st.text(), json_values, max_size=8)


# --- round trip and layout ------------------------------------------------------------


def test_round_trip() -> None:
    c = cipher(KEY_A)
    assert decrypt(c, encrypt(c)) == CONFIG


def test_blob_layout() -> None:
    c = cipher(KEY_A)
    blob = encrypt(c)
    assert blob[:3] == b"OFC" == MAGIC
    assert blob[3] == 2 == FORMAT_VERSION
    assert blob[4] == 0x01  # bound
    assert blob[5:9] == key_id_of(bytes.fromhex(KEY_A)) == blob_key_id(blob)
    assert HEADER_BYTES == 9
    assert len(blob) == 3 + 1 + 1 + 4 + 12 + len(canonical(CONFIG)) + 16
    assert SECRET.encode() not in blob


def test_unbound_blob_layout() -> None:
    blob = cipher(KEY_A).encrypt_config(CONFIG)
    assert blob[:5] == b"OFC\x02\x00"
    assert blob[5:9] == key_id_of(bytes.fromhex(KEY_A)) == blob_key_id(blob)
    assert len(blob) == 9 + 12 + len(canonical(CONFIG)) + 16


def test_blob_is_standard_aes_256_gcm_over_header_and_context() -> None:
    """Decrypt with the cryptography library directly: nonce after header, tag at the end."""
    blob = encrypt(cipher(KEY_A))
    header, nonce = blob[:9], blob[9 : 9 + NONCE_BYTES]
    aad = b"orderflow/erp_connection/v2\x00" + header + str(ORG).encode() + b"\x00" + CTYPE.encode()
    assert associated_data(header, ORG, CTYPE) == aad
    plaintext = AESGCM(bytes.fromhex(KEY_A)).decrypt(nonce, blob[9 + NONCE_BYTES :], aad)
    assert plaintext == canonical(CONFIG)
    assert len(blob) - 9 - NONCE_BYTES - len(plaintext) == TAG_BYTES == 16


def test_unbound_blob_associated_data_is_the_header_alone() -> None:
    blob = cipher(KEY_A).encrypt_config(CONFIG)
    header, nonce = blob[:9], blob[9 : 9 + NONCE_BYTES]
    aad = b"orderflow/erp_connection/v2\x00" + header
    # Whatever context a caller names, an unbound blob's associated data ignores it.
    assert associated_data(header, None, None) == aad == associated_data(header, ORG, CTYPE)
    plaintext = AESGCM(bytes.fromhex(KEY_A)).decrypt(nonce, blob[9 + NONCE_BYTES :], aad)
    assert plaintext == canonical(CONFIG)


def test_nonces_differ_between_two_encryptions() -> None:
    c = cipher(KEY_A)
    first, second = encrypt(c), encrypt(c)
    assert first[9:21] != second[9:21]
    assert first != second
    assert decrypt(c, first) == decrypt(c, second) == CONFIG


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(config=json_configs)
def test_round_trip_of_any_json_config(config: dict[str, Any]) -> None:
    c = cipher(KEY_A)
    blob = encrypt(c, config)
    assert len(blob) == 21 + len(canonical(config)) + 16
    assert decrypt(c, blob) == config


def test_ids_are_normalised_for_the_binding() -> None:
    c = cipher(KEY_A)
    blob = c.encrypt_config(CONFIG, org_id=str(ORG).upper(), connector_type=CTYPE)
    assert c.decrypt_config(blob, org_id=ORG, connector_type=CTYPE) == CONFIG
    assert c.decrypt_config(blob, org_id=str(ORG), connector_type=CTYPE) == CONFIG


# --- tampering --------------------------------------------------------------------------

_BLOB = encrypt(cipher(KEY_A))
_CORRUPTED = f"{TAG_FAILED} (data corrupted, or bound to another organisation or connector type)"


def _expected_failure(position: int, flipped: bytes) -> str:
    """The exact text (or text fragment) each region of the blob must fail with."""
    if position < 3:
        return f"{TAG_FAILED}: not an OrderFlow encrypted config (bad header)"
    if position == 3:
        return f"{TAG_FAILED}: unsupported encrypted config format version {flipped[3]}"
    if position == 4 and flipped[4] > 1:
        return f"{TAG_FAILED}: unknown encrypted config form {flipped[4]}"
    if position == 4:  # now says unbound: the header is in the associated data
        return _CORRUPTED
    if position < 9:
        return f"{TAG_FAILED}: no configured key has id {flipped[5:9].hex()}"
    return _CORRUPTED


@settings(max_examples=300)
@given(position=st.integers(0, len(_BLOB) - 1), bit=st.integers(0, 7))
def test_any_single_bit_flip_fails_authentication(position: int, bit: int) -> None:
    flipped = bytearray(_BLOB)
    flipped[position] ^= 1 << bit
    with pytest.raises(EncryptionError) as excinfo:
        decrypt(cipher(KEY_A), bytes(flipped))
    message = str(excinfo.value)
    assert message.startswith(TAG_FAILED)
    assert message.startswith(_expected_failure(position, bytes(flipped)))
    assert SECRET not in message
    assert KEY_A not in message


@pytest.mark.parametrize("position", [0, 3, 4, 5, 10, len(_BLOB) // 2, len(_BLOB) - 1])
def test_every_region_of_the_blob_is_covered(position: int) -> None:
    flipped = bytearray(_BLOB)
    flipped[position] ^= 0x80
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
        decrypt(cipher(KEY_A), bytes(flipped))


@pytest.mark.parametrize("length", [0, 1, 4, 8, 9, 20, 36])
def test_truncated_blob_is_a_bad_header(length: int) -> None:
    with pytest.raises(EncryptionError, match=r"\(bad header\)$"):
        decrypt(cipher(KEY_A), _BLOB[:length])


def test_truncating_the_tag_fails_authentication() -> None:
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
        decrypt(cipher(KEY_A), _BLOB[:-1])
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
        decrypt(cipher(KEY_A), _BLOB + b"\x00")


def test_non_bytes_blob_is_rejected_by_type_name() -> None:
    with pytest.raises(EncryptionError, match="must be bytes, got str"):
        decrypt(cipher(KEY_A), "OFC...")  # type: ignore[arg-type]


def test_bytearray_and_memoryview_blobs_decrypt() -> None:
    c = cipher(KEY_A)
    blob = encrypt(c)
    assert decrypt(c, bytearray(blob)) == CONFIG  # type: ignore[arg-type]
    assert decrypt(c, memoryview(blob)) == CONFIG  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("plaintext", "reason"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b"not json at all", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
    ],
)
def test_authentic_blob_with_bad_content_is_an_encryption_error(
    plaintext: bytes, reason: str
) -> None:
    """A blob that verifies but holds no JSON object (a foreign writer) is still reported."""
    key = bytes.fromhex(KEY_A)
    header = MAGIC + bytes([FORMAT_VERSION, 0x01]) + key_id_of(key)
    nonce = b"\x01" * NONCE_BYTES
    sealed = AESGCM(key).encrypt(nonce, plaintext, associated_data(header, ORG, CTYPE))
    blob = header + nonce + sealed
    with pytest.raises(EncryptionError, match=reason):
        decrypt(cipher(KEY_A), blob)


# --- binding to (org_id, connector_type) ---------------------------------------------


def test_blob_moved_to_another_org_fails() -> None:
    c = cipher(KEY_A)
    blob = encrypt(c)
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}") as excinfo:
        c.decrypt_config(blob, org_id=OTHER_ORG, connector_type=CTYPE)
    assert "another organisation" in str(excinfo.value)


def test_blob_moved_to_another_connector_type_fails() -> None:
    c = cipher(KEY_A)
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
        c.decrypt_config(encrypt(c), org_id=ORG, connector_type="MOCK")


def test_bound_blob_does_not_decrypt_without_context() -> None:
    c = cipher(KEY_A)
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}") as excinfo:
        c.decrypt_config(encrypt(c))
    assert "pass org_id and connector_type" in str(excinfo.value)


# --- keys -------------------------------------------------------------------------------


def test_wrong_master_key_names_the_key_id_and_old_keys_variable() -> None:
    blob = encrypt(cipher(KEY_A))
    with pytest.raises(EncryptionError) as excinfo:
        decrypt(cipher(KEY_B), blob)
    message = str(excinfo.value)
    assert type(excinfo.value) is EncryptionError
    assert message.startswith(TAG_FAILED)
    assert key_id_of(bytes.fromhex(KEY_A)).hex() in message
    assert OLD_KEYS_ENV in message
    assert MASTER_KEY_ENV in message
    for key in (KEY_A, KEY_B):
        assert key not in message
        assert key.upper() not in message


def test_rotation_old_key_decrypts_and_rewrap_moves_to_the_primary() -> None:
    old = cipher(KEY_A)
    blob = encrypt(old)
    rotated = cipher(KEY_B, KEY_A)
    assert decrypt(rotated, blob) == CONFIG
    assert rotated.needs_rewrap(blob) is True

    rewrapped = rotated.rewrap(blob, org_id=ORG, connector_type=CTYPE)
    assert rewrapped != blob
    assert blob_key_id(rewrapped) == key_id_of(bytes.fromhex(KEY_B))
    assert rotated.needs_rewrap(rewrapped) is False
    # Once everything is rewrapped, the old key can be dropped ...
    assert decrypt(cipher(KEY_B), rewrapped) == CONFIG
    # ... and the old key alone no longer opens the new blob.
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
        decrypt(old, rewrapped)

    twice = rotated.rewrap(rewrapped, org_id=ORG, connector_type=CTYPE)
    assert rotated.needs_rewrap(twice) is False
    assert decrypt(cipher(KEY_B), twice) == CONFIG


def test_rewrap_keeps_the_binding() -> None:
    rotated = cipher(KEY_B, KEY_A)
    rewrapped = rotated.rewrap(encrypt(cipher(KEY_A)), org_id=ORG, connector_type=CTYPE)
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
        rotated.decrypt_config(rewrapped, org_id=OTHER_ORG, connector_type=CTYPE)


def test_rewrap_with_the_wrong_context_fails_and_changes_nothing() -> None:
    rotated = cipher(KEY_B, KEY_A)
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
        rotated.rewrap(encrypt(cipher(KEY_A)), org_id=OTHER_ORG, connector_type=CTYPE)


def test_several_old_keys_all_decrypt() -> None:
    ring = cipher(KEY_C, KEY_A, KEY_B)
    assert decrypt(ring, encrypt(cipher(KEY_A))) == CONFIG
    assert decrypt(ring, encrypt(cipher(KEY_B))) == CONFIG
    assert blob_key_id(encrypt(ring)) == key_id_of(bytes.fromhex(KEY_C))


# --- EncryptionService (environment) ----------------------------------------------------


@pytest.fixture
def env_key(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv(MASTER_KEY_ENV, KEY_A)
    monkeypatch.delenv(OLD_KEYS_ENV, raising=False)
    return monkeypatch


def test_service_round_trip_from_environment(env_key: pytest.MonkeyPatch) -> None:
    blob = EncryptionService.encrypt_config(CONFIG, org_id=ORG, connector_type=CTYPE)
    assert blob_key_id(blob) == key_id_of(bytes.fromhex(KEY_A))
    assert EncryptionService.decrypt_config(blob, org_id=ORG, connector_type=CTYPE) == CONFIG


def test_service_picks_up_a_changed_key(env_key: pytest.MonkeyPatch) -> None:
    blob = EncryptionService.encrypt_config(CONFIG, org_id=ORG, connector_type=CTYPE)
    env_key.setenv(MASTER_KEY_ENV, KEY_B)
    assert blob_key_id(EncryptionService.encrypt_config(CONFIG)) == key_id_of(bytes.fromhex(KEY_B))
    with pytest.raises(EncryptionError, match=f"^{TAG_FAILED}"):
        EncryptionService.decrypt_config(blob, org_id=ORG, connector_type=CTYPE)
    env_key.setenv(OLD_KEYS_ENV, KEY_A)
    assert EncryptionService.decrypt_config(blob, org_id=ORG, connector_type=CTYPE) == CONFIG
    env_key.setenv(MASTER_KEY_ENV, f"  {KEY_A.upper()}\n")  # whitespace and case tolerated
    env_key.delenv(OLD_KEYS_ENV)
    assert EncryptionService.decrypt_config(blob, org_id=ORG, connector_type=CTYPE) == CONFIG


def test_service_without_key_raises_master_key_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    with pytest.raises(MasterKeyError, match=f"^{MASTER_KEY_ENV} is not set"):
        EncryptionService.encrypt_config(CONFIG)
    with pytest.raises(MasterKeyError, match=f"^{MASTER_KEY_ENV} is not set"):
        EncryptionService.decrypt_config(_BLOB)


def test_cipher_from_explicit_environ_mapping() -> None:
    c = ConfigCipher.from_env({MASTER_KEY_ENV: KEY_B, OLD_KEYS_ENV: f"{KEY_A}, {KEY_C}"})
    assert decrypt(c, encrypt(cipher(KEY_C))) == CONFIG
    assert blob_key_id(encrypt(c)) == key_id_of(bytes.fromhex(KEY_B))


class _Opaque:
    def __repr__(self) -> str:
        return f"Opaque({SECRET})"


@pytest.mark.parametrize(
    "config",
    [
        {"password": SECRET, "blob": SECRET.encode()},
        {"password": {SECRET}},
        {"password": _Opaque()},
        {SECRET: 1, 2: "mixed key types cannot be sorted"},
    ],
)
def test_non_serialisable_config_is_refused_without_its_values(config: dict[Any, Any]) -> None:
    with pytest.raises(EncryptionError) as excinfo:
        cipher(KEY_A).encrypt_config(config, org_id=ORG, connector_type=CTYPE)
    error = excinfo.value
    assert str(error).startswith("config is not JSON-serialisable")
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_non_mapping_config_is_refused() -> None:
    with pytest.raises(EncryptionError, match="config must be a mapping, got list"):
        cipher(KEY_A).encrypt_config([SECRET])  # type: ignore[arg-type]
