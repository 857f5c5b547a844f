"""Master keys: parsing ``ENCRYPTION_MASTER_KEY``, key ids and the rotation keyring.

A bad key must give a ``MasterKeyError`` (an ``EncryptionError``) that says what is
wrong and never repeats the key; reprs show key ids only.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.crypto.encryption import ConfigCipher
from adapters.crypto.keys import (
    KEY_BYTES,
    KEY_ID_BYTES,
    MASTER_KEY_ENV,
    OLD_KEYS_ENV,
    EncryptionError,
    MasterKeyError,
    MasterKeyring,
    generate_master_key,
    key_id_of,
    parse_master_key,
)

KEY_A = "a1" * 32
KEY_B = "b2" * 32
KEY_C = "c3" * 32


def test_generated_keys_are_64_hex_chars_and_distinct() -> None:
    keys = {generate_master_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(key) == 64
        assert parse_master_key(key) == bytes.fromhex(key)


def test_parse_accepts_surrounding_whitespace_and_upper_case() -> None:
    assert parse_master_key(f"  {KEY_A.upper()}\n") == bytes.fromhex(KEY_A)


@given(st.binary(min_size=KEY_BYTES, max_size=KEY_BYTES))
def test_key_id_is_a_4_byte_digest_prefix(key: bytes) -> None:
    key_id = key_id_of(key)
    assert len(key_id) == KEY_ID_BYTES == 4
    assert key_id == key_id_of(bytes(key))
    assert key_id == hashlib.sha256(b"orderflow-key-id\x00" + key).digest()[:4]


def test_key_ids_differ_between_keys() -> None:
    ids = {key_id_of(bytes.fromhex(k)) for k in (KEY_A, KEY_B, KEY_C)}
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, f"{MASTER_KEY_ENV} is not set"),
        ("", f"{MASTER_KEY_ENV} is not set"),
        ("   ", f"{MASTER_KEY_ENV} is not set"),
        ("abcdef0123456789", f"{MASTER_KEY_ENV} must be 64 hex characters (32 bytes), got 16"),
        ("ab" * 33, f"{MASTER_KEY_ENV} must be 64 hex characters (32 bytes), got 66"),
        ("zq" * 32, f"{MASTER_KEY_ENV} is not valid hex"),
        ("0x" + "ab" * 31, f"{MASTER_KEY_ENV} is not valid hex"),
        ("ab" * 31 + "aé", f"{MASTER_KEY_ENV} is not valid hex"),
    ],
)
def test_bad_master_key_is_a_clear_master_key_error(value: str | None, expected: str) -> None:
    env = {} if value is None else {MASTER_KEY_ENV: value}
    with pytest.raises(MasterKeyError) as excinfo:
        MasterKeyring.from_env(env)
    error = excinfo.value
    assert isinstance(error, EncryptionError)
    message = str(error)
    assert message.startswith(expected)
    if value and value.strip():
        assert value.strip() not in message
        assert value.strip()[:12] not in message
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


def test_missing_key_message_says_how_to_generate_one() -> None:
    with pytest.raises(MasterKeyError) as excinfo:
        ConfigCipher.from_env({})
    assert "orderflow keys generate" in str(excinfo.value)
    assert "os.urandom(32).hex()" in str(excinfo.value)


def test_bad_old_key_names_its_position_without_its_value() -> None:
    bad = "ff" * 20
    with pytest.raises(MasterKeyError) as excinfo:
        MasterKeyring.from_hex(KEY_A, f"{KEY_B},{bad}")
    message = str(excinfo.value)
    assert message.startswith(f"{OLD_KEYS_ENV}[1] must be 64 hex characters")
    for key in (bad, KEY_A, KEY_B):
        assert key not in message


def test_old_keys_list_ignores_blank_entries() -> None:
    ring = MasterKeyring.from_hex(KEY_A, f" {KEY_B} ,, {KEY_C},")
    assert ring.older == (bytes.fromhex(KEY_B), bytes.fromhex(KEY_C))


def test_keyring_rejects_raw_keys_of_the_wrong_length() -> None:
    with pytest.raises(MasterKeyError, match=r"^a master key must be 32 bytes, got 16$"):
        MasterKeyring(b"k" * 16)
    with pytest.raises(MasterKeyError, match=r"^a master key must be 32 bytes, got 31$"):
        MasterKeyring(b"k" * 32, (b"o" * 31,))


def test_keyring_finds_every_key_by_id() -> None:
    ring = MasterKeyring.from_hex(KEY_A, f"{KEY_B},{KEY_C}")
    for hex_key in (KEY_A, KEY_B, KEY_C):
        key = bytes.fromhex(hex_key)
        assert ring.key_for(key_id_of(key)) == key
    assert ring.primary_id == key_id_of(bytes.fromhex(KEY_A))
    assert ring.key_for(b"\x00\x00\x00\x00") is None


def test_primary_repeated_among_old_keys_is_harmless() -> None:
    ring = MasterKeyring.from_hex(KEY_A, f"{KEY_A},{KEY_B}")
    assert ring.key_for(ring.primary_id) == bytes.fromhex(KEY_A)
    assert repr(ring).count(ring.primary_id.hex()) == 2  # primary_id=..., and once in key_ids


def test_from_env_reads_both_variables() -> None:
    ring = MasterKeyring.from_env({MASTER_KEY_ENV: KEY_B, OLD_KEYS_ENV: KEY_A})
    assert ring.primary == bytes.fromhex(KEY_B)
    assert ring.older == (bytes.fromhex(KEY_A),)


def test_from_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, KEY_C)
    monkeypatch.delenv(OLD_KEYS_ENV, raising=False)
    assert MasterKeyring.from_env().primary == bytes.fromhex(KEY_C)


def test_reprs_show_key_ids_but_no_key_material() -> None:
    ring = MasterKeyring.from_hex(KEY_A, KEY_B)
    cipher = ConfigCipher(ring)
    for text in (repr(ring), str(ring), repr(cipher), str(cipher), f"{cipher!r}"):
        for hex_key in (KEY_A, KEY_B):
            raw = bytes.fromhex(hex_key)
            assert hex_key not in text
            assert hex_key.upper() not in text
            assert repr(raw)[2:12] not in text
            assert raw.hex()[:8] not in text
        assert key_id_of(bytes.fromhex(KEY_A)).hex() in text
        assert key_id_of(bytes.fromhex(KEY_B)).hex() in text
    assert repr(ring).startswith(f"MasterKeyring(primary_id={ring.primary_id.hex()}, key_ids=[")
    assert repr(cipher) == f"ConfigCipher({ring!r}, require_bound=False)"
