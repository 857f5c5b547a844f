"""AES-256-GCM encryption of connector configs (seed: ``EncryptionService``).

Blob layout (format version 1)::

    b"OFC" | version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext+tag

The associated data is the header plus the context (org id, connector type),
so a blob copied to another organisation or connector type, a changed
header or any flipped bit fails with "authentication tag verification
failed". Plaintext exists only in memory during a call.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.crypto.keys import (
    KEY_ID_BYTES,
    MASTER_KEY_ENV,
    OLD_KEYS_ENV,
    EncryptionError,
    MasterKeyError,
    MasterKeyring,
)

__all__ = ["ConfigCipher", "EncryptionError", "EncryptionService", "MasterKeyError"]

MAGIC = b"OFC"
FORMAT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + 1 + KEY_ID_BYTES
MIN_BLOB_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
TAG_FAILED = "authentication tag verification failed"


def associated_data(
    header: bytes, org_id: uuid.UUID | str | None, connector_type: str | None
) -> bytes:
    """Bind a blob to its header and to (org_id, connector_type)."""
    org = "" if org_id is None else str(uuid.UUID(str(org_id)))
    kind = connector_type or ""
    return b"orderflow/erp_connection/v1\x00" + header + org.encode() + b"\x00" + kind.encode()


def blob_key_id(blob: bytes) -> bytes:
    """Return the key id in a blob's header (raises ``EncryptionError`` if malformed)."""
    _check_header(blob)
    return bytes(blob[len(MAGIC) + 1 : HEADER_BYTES])


def _check_header(blob: bytes) -> None:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise EncryptionError(f"encrypted config must be bytes, got {type(blob).__name__}")
    if len(blob) < MIN_BLOB_BYTES or bytes(blob[: len(MAGIC)]) != MAGIC:
        raise EncryptionError(f"{TAG_FAILED}: not an OrderFlow encrypted config (bad header)")
    version = blob[len(MAGIC)]
    if version != FORMAT_VERSION:
        # Still the seed's phrase: a flipped version bit is corruption to the operator.
        raise EncryptionError(
            f"{TAG_FAILED}: unsupported encrypted config format version {version}"
        )


class ConfigCipher:
    """Encrypts with the keyring's primary key; decrypts with any key in it."""

    def __init__(self, keyring: MasterKeyring) -> None:
        self.keyring = keyring
        self._aead = {key_id: AESGCM(key) for key_id, key in keyring.keys_by_id().items()}

    def __repr__(self) -> str:
        return f"ConfigCipher({self.keyring!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConfigCipher:
        """Build a cipher from ``ENCRYPTION_MASTER_KEY`` (+ ``ENCRYPTION_OLD_KEYS``)."""
        return cls(MasterKeyring.from_env(environ))

    def encrypt_config(
        self,
        config: Mapping[str, Any],
        *,
        org_id: uuid.UUID | str | None = None,
        connector_type: str | None = None,
    ) -> bytes:
        """Return the encrypted blob of ``config`` bound to (org_id, connector_type)."""
        if not isinstance(config, Mapping):
            raise EncryptionError(f"config must be a mapping, got {type(config).__name__}")
        try:
            plaintext = json.dumps(dict(config), sort_keys=True, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            # The message names the offending type, never a value.
            raise EncryptionError(
                f"config is not JSON-serialisable: {type(exc).__name__}"
            ) from None
        header = MAGIC + bytes([FORMAT_VERSION]) + self.keyring.primary_id
        nonce = os.urandom(NONCE_BYTES)
        aad = associated_data(header, org_id, connector_type)
        return header + nonce + self._aead[self.keyring.primary_id].encrypt(nonce, plaintext, aad)

    def decrypt_config(
        self,
        blob: bytes,
        /,
        *,
        org_id: uuid.UUID | str | None = None,
        connector_type: str | None = None,
    ) -> dict[str, Any]:
        """Return the config in ``blob``; ``EncryptionError`` if it does not verify."""
        _check_header(blob)
        data = bytes(blob)
        header = data[:HEADER_BYTES]
        key_id = header[len(MAGIC) + 1 :]
        aead = self._aead.get(key_id)
        if aead is None:
            raise EncryptionError(
                f"{TAG_FAILED}: no configured key has id {key_id.hex()} "
                f"(was {MASTER_KEY_ENV} changed after encryption? add the old key to "
                f"{OLD_KEYS_ENV})"
            )
        nonce = data[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        try:
            plaintext = aead.decrypt(
                nonce,
                data[HEADER_BYTES + NONCE_BYTES :],
                associated_data(header, org_id, connector_type),
            )
        except InvalidTag:
            raise EncryptionError(
                f"{TAG_FAILED} (data corrupted, or bound to another organisation or connector type)"
            ) from None
        try:
            config = json.loads(plaintext)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError: never echo the plaintext
            raise EncryptionError("decrypted config is not valid JSON") from None
        if not isinstance(config, dict):
            raise EncryptionError("decrypted config is not a JSON object")
        return config

    def needs_rewrap(self, blob: bytes) -> bool:
        """Tell whether ``blob`` was encrypted with a key other than the primary."""
        return blob_key_id(blob) != self.keyring.primary_id

    def rewrap(
        self, blob: bytes, *, org_id: uuid.UUID | str | None, connector_type: str | None
    ) -> bytes:
        """Re-encrypt ``blob`` under the primary key (same binding)."""
        config = self.decrypt_config(blob, org_id=org_id, connector_type=connector_type)
        return self.encrypt_config(config, org_id=org_id, connector_type=connector_type)


class EncryptionService:
    """The seed's facade: class methods keyed from the environment.

    The cipher is cached per value of the key variables, so changing
    ``ENCRYPTION_MASTER_KEY`` (as tests do) takes effect on the next call.
    """

    _cached: ClassVar[tuple[tuple[str | None, str | None], ConfigCipher] | None] = None

    @classmethod
    def cipher(cls) -> ConfigCipher:
        """Return the cipher for the current environment."""
        env_key = (os.environ.get(MASTER_KEY_ENV), os.environ.get(OLD_KEYS_ENV))
        cached = cls._cached
        if cached is not None and cached[0] == env_key:
            return cached[1]
        cipher = ConfigCipher.from_env()
        cls._cached = (env_key, cipher)
        return cipher

    @classmethod
    def encrypt_config(
        cls,
        config: Mapping[str, Any],
        *,
        org_id: uuid.UUID | str | None = None,
        connector_type: str | None = None,
    ) -> bytes:
        """Encrypt ``config`` with ``ENCRYPTION_MASTER_KEY``, bound to the context."""
        return cls.cipher().encrypt_config(config, org_id=org_id, connector_type=connector_type)

    @classmethod
    def decrypt_config(
        cls,
        blob: bytes,
        *,
        org_id: uuid.UUID | str | None = None,
        connector_type: str | None = None,
    ) -> dict[str, Any]:
        """Decrypt ``blob`` with any configured key; the context must match encryption."""
        return cls.cipher().decrypt_config(blob, org_id=org_id, connector_type=connector_type)
