"""Host key lines, SHA256 fingerprints, the pin, and client private keys from text."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st

from adapters.sftp.hostkeys import (
    HostKeyError,
    HostKeyPin,
    fingerprint_sha256,
    parse_fingerprint,
    parse_host_key_line,
)
from adapters.sftp.keys import PrivateKeyError, load_private_key, looks_like_private_key

PASSPHRASE = "correct horse battery staple"


def _private_text(key, fmt, passphrase: str | None = None) -> str:
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption).decode("ascii")


def _public_line(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )


ED25519 = ed25519.Ed25519PrivateKey.generate()
ECDSA = ec.generate_private_key(ec.SECP256R1())
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- host key lines ------------------------------------------------------------------


@pytest.mark.parametrize("key", [ED25519, ECDSA, RSA], ids=["ed25519", "ecdsa", "rsa"])
def test_host_key_line_round_trips_and_fingerprints_like_ssh_keygen(key, tmp_path: Path) -> None:
    line = _public_line(key)
    parsed = parse_host_key_line(line + " some comment")
    assert parsed.line() == line
    assert parsed.key_type == line.split()[0]
    pub = tmp_path / "key.pub"
    pub.write_text(line + "\n")
    keygen = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=False
    )
    if keygen.returncode != 0:
        pytest.skip("ssh-keygen not available")
    assert keygen.stdout.split()[1] == parsed.fingerprint
    # paramiko computes the same fingerprint for the same key.
    pkey = paramiko.PKey.from_type_string(parsed.key_type, parsed.blob)
    assert pkey.fingerprint == parsed.fingerprint


def test_known_hosts_line_is_accepted() -> None:
    line = _public_line(ED25519)
    assert parse_host_key_line(f"[sftp.example.com]:2222 {line}").line() == line


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ssh-ed25519",
        "AAAAC3NzaC1lZDI1NTE5AAAA",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519 not*base64",
        "ssh-rsa " + _public_line(ED25519).split()[1],  # label does not match the blob
        "ssh-ed25519 AAAA",
    ],
)
def test_bad_host_key_lines_are_refused_without_echoing(text: str) -> None:
    with pytest.raises(HostKeyError) as info:
        parse_host_key_line(text)
    if len(text) > 12:
        assert text not in str(info.value)


# --- fingerprints --------------------------------------------------------------------


def test_fingerprint_forms() -> None:
    fp = parse_host_key_line(_public_line(ED25519)).fingerprint
    assert fp.startswith("SHA256:") and not fp.endswith("=")
    assert parse_fingerprint(fp) == fp
    assert parse_fingerprint(f"  {fp}=  ") == fp  # padded form
    assert parse_fingerprint(f"256 {fp} user@host (ED25519)") == fp  # ssh-keygen -l line


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SHA256:",
        "SHA256:abc",
        "sha256:" + "A" * 43,
        "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48",
        "16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48",
        "SHA256:" + "A" * 42 + "!",
        "SHA256:" + "A" * 44,
        "SHA256:" + "A" * 43 + " SHA256:" + "B" * 43,
    ],
)
def test_bad_fingerprints_are_refused(text: str) -> None:
    with pytest.raises(HostKeyError):
        parse_fingerprint(text)


def test_md5_fingerprint_gets_a_helpful_message() -> None:
    with pytest.raises(HostKeyError, match="SHA256"):
        parse_fingerprint("MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48")


@given(st.binary(min_size=1, max_size=200))
def test_fingerprint_of_any_blob_parses_back(blob: bytes) -> None:
    fp = fingerprint_sha256(blob)
    assert parse_fingerprint(fp) == fp
    digest = base64.b64decode(fp.removeprefix("SHA256:") + "=")
    assert digest == hashlib.sha256(blob).digest()


# --- the pin ---------------------------------------------------------------------------


def test_pin_by_key_matches_only_that_key() -> None:
    pin = HostKeyPin.from_config(_public_line(ED25519), None)
    good = parse_host_key_line(_public_line(ED25519)).blob
    other = parse_host_key_line(_public_line(ed25519.Ed25519PrivateKey.generate())).blob
    assert pin.matches(good)
    assert not pin.matches(other)
    assert pin.expected_fingerprint == fingerprint_sha256(good)


def test_pin_by_fingerprint_matches_only_that_key() -> None:
    good = parse_host_key_line(_public_line(ECDSA))
    pin = HostKeyPin.from_config(None, good.fingerprint)
    assert pin.matches(good.blob)
    assert not pin.matches(parse_host_key_line(_public_line(ED25519)).blob)


def test_pin_with_key_and_fingerprint_must_agree() -> None:
    line = _public_line(ED25519)
    fp = parse_host_key_line(line).fingerprint
    assert HostKeyPin.from_config(line, fp).matches(parse_host_key_line(line).blob)
    other_fp = parse_host_key_line(_public_line(ECDSA)).fingerprint
    with pytest.raises(HostKeyError):
        HostKeyPin.from_config(line, other_fp)


def test_pin_needs_something() -> None:
    with pytest.raises(HostKeyError):
        HostKeyPin.from_config(None, "")


def test_pinned_key_type_is_negotiated_first() -> None:
    available = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256")
    rsa_pin = HostKeyPin.from_config(_public_line(RSA), None)
    assert rsa_pin.preferred_algorithms(available) == [
        "rsa-sha2-512",
        "rsa-sha2-256",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
    ]
    ecdsa_pin = HostKeyPin.from_config(_public_line(ECDSA), None)
    assert ecdsa_pin.preferred_algorithms(available)[0] == "ecdsa-sha2-nistp256"
    fp_pin = HostKeyPin.from_config(None, fingerprint_sha256(b"x"))
    assert fp_pin.preferred_algorithms(available) == list(available)


# --- client private keys ---------------------------------------------------------------

OPENSSH = serialization.PrivateFormat.OpenSSH
PEM = serialization.PrivateFormat.TraditionalOpenSSL


@pytest.mark.parametrize(
    ("key", "fmt", "expected"),
    [
        (ED25519, OPENSSH, paramiko.Ed25519Key),
        (ECDSA, OPENSSH, paramiko.ECDSAKey),
        (ECDSA, PEM, paramiko.ECDSAKey),
        (RSA, OPENSSH, paramiko.RSAKey),
        (RSA, PEM, paramiko.RSAKey),
    ],
    ids=["ed25519-openssh", "ecdsa-openssh", "ecdsa-pem", "rsa-openssh", "rsa-pem"],
)
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_private_keys_load_from_text(key, fmt, expected, encrypted: bool) -> None:
    text = _private_text(key, fmt, PASSPHRASE if encrypted else None)
    assert looks_like_private_key(text)
    loaded = load_private_key(text, PASSPHRASE if encrypted else None)
    assert isinstance(loaded, expected)
    assert loaded.get_base64() == _public_line(key).split()[1]


def test_passphrase_for_an_unencrypted_key_is_ignored() -> None:
    text = _private_text(ED25519, OPENSSH)
    assert isinstance(load_private_key(text, "unneeded"), paramiko.Ed25519Key)


@pytest.mark.parametrize("fmt", [OPENSSH, PEM], ids=["openssh", "pem"])
def test_encrypted_key_errors_name_the_problem_not_the_secret(fmt) -> None:
    key = RSA if fmt is PEM else ED25519
    text = _private_text(key, fmt, PASSPHRASE)
    with pytest.raises(PrivateKeyError, match="passphrase is required") as missing:
        load_private_key(text, None)
    with pytest.raises(PrivateKeyError, match="could not be decrypted") as wrong:
        load_private_key(text, "wrong " + PASSPHRASE)
    for info in (missing, wrong):
        rendered = repr(info.value) + str(info.value)
        assert PASSPHRASE not in rendered
        assert "PRIVATE KEY" not in rendered
        # Raised outside the except block: no library exception rides along.
        assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        _public_line(ED25519),
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
        "/home/me/.ssh/id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    ],
)
def test_non_keys_are_refused(text: str) -> None:
    with pytest.raises(PrivateKeyError) as info:
        load_private_key(text, None)
    assert "BEGIN" in str(info.value) or "could not" in str(info.value)
    assert info.value.__context__ is None
