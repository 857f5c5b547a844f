"""Loading client private keys from configuration text (never from disk).

Connector configs carry the key as text (it is stored encrypted with the rest of the
config), so the paramiko helpers that take a path do not fit. Errors carry a fixed,
descriptive message and are raised without chaining: neither the key nor the passphrase
can travel in an exception.
"""

from __future__ import annotations

import io
import re

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = ["PrivateKeyError", "load_private_key", "looks_like_private_key"]

_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]*PRIVATE KEY)-----\s+.+?\s+-----END (?P=label)-----",
    re.DOTALL,
)


class PrivateKeyError(ValueError):
    """A private key could not be loaded; the message never contains key material."""


def looks_like_private_key(text: str) -> bool:
    """Tell cheaply whether ``text`` contains a PEM/OpenSSH private key block.

    Used by config validation so an obviously wrong value (a public key, a PuTTY .ppk
    file, a path) is reported with the other config errors before any network I/O.
    """
    return isinstance(text, str) and _PEM_BLOCK.search(text) is not None


def _class_for(loaded: object) -> type[paramiko.PKey]:
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        return paramiko.Ed25519Key
    if isinstance(loaded, ec.EllipticCurvePrivateKey):
        return paramiko.ECDSAKey
    if isinstance(loaded, rsa.RSAPrivateKey):
        return paramiko.RSAKey
    raise PrivateKeyError("private_key has an unsupported key type (use ed25519, ecdsa or RSA)")


def _probe(data: bytes, password: bytes | None) -> object:
    """Load ``data`` as OpenSSH format first, then legacy PEM (as PKey.from_path does)."""
    try:
        return serialization.load_ssh_private_key(data, password=password)
    except ValueError:
        return serialization.load_pem_private_key(data, password=password)


def load_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """Return the paramiko key for an OpenSSH or PEM private key given as text.

    Supports ed25519, ECDSA and RSA, encrypted or not. Raises ``PrivateKeyError`` with a
    message that says what is wrong (not a key, encrypted without passphrase, wrong
    passphrase) and nothing more.
    """
    if not looks_like_private_key(text):
        raise PrivateKeyError(
            "private_key is not an OpenSSH or PEM private key (-----BEGIN ... PRIVATE KEY-----)"
        )
    data = text.strip().encode("ascii", errors="replace") + b"\n"
    password = passphrase.encode("utf-8") if passphrase else None
    # Detect the key type with cryptography (paramiko's PKey.from_path does the same, but
    # only for files), then let the matching paramiko class load it.
    error: str | None = None
    loaded: object = None
    try:
        try:
            loaded = _probe(data, password)
        except TypeError as exc:
            if password is None or "not encrypted" not in str(exc):
                raise
            # A passphrase for an unencrypted key is harmless: ignore it, as ssh does.
            password = None
            passphrase = None
            loaded = _probe(data, None)
    except TypeError:
        # cryptography raises TypeError when the key is encrypted and no password is given.
        error = "private_key is encrypted: private_key_passphrase is required"
    except ValueError:
        error = (
            "private_key could not be decrypted with private_key_passphrase"
            if password is not None
            else "private_key could not be parsed (ed25519, ecdsa or RSA, OpenSSH or PEM format)"
        )
    except Exception:  # an unsupported cipher/KDF etc.: say so without the library text
        error = "private_key could not be loaded (unsupported format or encryption)"
    if error is not None:
        raise PrivateKeyError(error)
    key_class = _class_for(loaded)
    try:
        return key_class.from_private_key(io.StringIO(data.decode("ascii")), password=passphrase)
    except paramiko.PasswordRequiredException:
        error = "private_key is encrypted: private_key_passphrase is required"
    except Exception:
        error = "private_key could not be loaded by the SSH library"
    raise PrivateKeyError(error)
