"""AES-256-GCM encryption of connector configs (seed: ``EncryptionService``).

A blob is *bound* when made with an organisation and a connector type, and
*unbound* when made without (the seed's ``encrypt_config(config)``)::

    b"OFC" | 0x02 | form (0x01 bound, 0x00 unbound) | key id (4) | nonce (12) | ciphertext | tag

The associated data is the header plus, for a bound blob, the context (org id,
connector type): a bound blob copied to another organisation or connector
type, decrypted without its context, a changed header (the form byte
included) or any flipped bit fails with "authentication tag verification
failed". An unbound blob decrypts with any context or none. Format version 1
blobs (no form byte; the empty binding meant unbound) still decrypt; the
layouts are in ``adapters.crypto.blob_format``.

``ENCRYPTION_REQUIRE_BOUND=1`` refuses to make or return unbound configs
(``orderflow keys rewrap`` binds the stored ones). Plaintext exists only in
memory during a call.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.crypto.blob_format import (
    FORMAT_VERSION,
    HEADER_BYTES,
    LEGACY_FORMAT_VERSION,
    LEGACY_HEADER_BYTES,
    MAGIC,
    NONCE_BYTES,
    TAG_BYTES,
    TAG_FAILED,
    Binding,
    BlobForm,
    aad_for,
    associated_data,
    binding_of,
    blob_form,
    blob_is_bound,
    blob_key_id,
    make_header,
    parse_header,
)
from adapters.crypto.keys import (
    MASTER_KEY_ENV,
    OLD_KEYS_ENV,
    REQUIRE_BOUND_ENV,
    EncryptionError,
    EncryptionSettingError,
    MasterKeyError,
    MasterKeyring,
    UnboundConfigError,
    parse_require_bound,
)

__all__ = [
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "LEGACY_FORMAT_VERSION",
    "LEGACY_HEADER_BYTES",
    "MAGIC",
    "NONCE_BYTES",
    "TAG_BYTES",
    "TAG_FAILED",
    "BlobForm",
    "ConfigCipher",
    "EncryptionError",
    "EncryptionService",
    "EncryptionSettingError",
    "MasterKeyError",
    "OpenedConfig",
    "UnboundConfigError",
    "associated_data",
    "blob_form",
    "blob_is_bound",
    "blob_key_id",
]

_CORRUPTED = f"{TAG_FAILED} (data corrupted, or bound to another organisation or connector type)"


@dataclass(frozen=True)
class OpenedConfig:
    """A decrypted config and what its blob turned out to be (the config never in a repr)."""

    config: dict[str, Any] = field(repr=False)
    #: True if the blob was bound to (org_id, connector_type); False if unbound.
    bound: bool
    version: int
    key_id: bytes


class ConfigCipher:
    """Encrypts with the keyring's primary key; decrypts with any key in it.

    With ``require_bound`` (``ENCRYPTION_REQUIRE_BOUND=1``) it neither makes
    nor returns unbound configs.
    """

    def __init__(self, keyring: MasterKeyring, *, require_bound: bool = False) -> None:
        self.keyring = keyring
        self.require_bound = require_bound
        self._aead = {key_id: AESGCM(key) for key_id, key in keyring.keys_by_id().items()}

    def __repr__(self) -> str:
        return f"ConfigCipher({self.keyring!r}, require_bound={self.require_bound})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConfigCipher:
        """Build a cipher from the ``ENCRYPTION_*`` variables (keys, require-bound)."""
        env = os.environ if environ is None else environ
        require_bound = parse_require_bound(env.get(REQUIRE_BOUND_ENV))
        return cls(MasterKeyring.from_env(env), require_bound=require_bound)

    def encrypt_config(
        self,
        config: Mapping[str, Any],
        *,
        org_id: uuid.UUID | str | None = None,
        connector_type: str | None = None,
    ) -> bytes:
        """Return the encrypted blob of ``config``.

        Bound to (org_id, connector_type) when both are given; unbound (it
        decrypts in any context) when neither is; half a context is an error.
        """
        if not isinstance(config, Mapping):
            raise EncryptionError(f"config must be a mapping, got {type(config).__name__}")
        binding = binding_of(org_id, connector_type)
        if binding is None and self.require_bound:
            raise UnboundConfigError(
                f"{REQUIRE_BOUND_ENV}=1 refuses to make an unbound config blob: "
                f"pass org_id and connector_type to encrypt_config"
            )
        try:
            plaintext = json.dumps(dict(config), sort_keys=True, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            # The message names the offending type, never a value.
            raise EncryptionError(
                f"config is not JSON-serialisable: {type(exc).__name__}"
            ) from None
        header = make_header(self.keyring.primary_id, bound=binding is not None)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[self.keyring.primary_id].encrypt(
            nonce, plaintext, aad_for(header, binding)
        )
        return header.raw + nonce + sealed

    def decrypt_config(
        self,
        blob: bytes,
        /,
        *,
        org_id: uuid.UUID | str | None = None,
        connector_type: str | None = None,
    ) -> dict[str, Any]:
        """Return the config in ``blob``; ``EncryptionError`` if it does not verify.

        A bound blob needs the context it was made with; an unbound one opens
        in any context, unless ``require_bound`` (then ``UnboundConfigError``).
        """
        opened = self.open_config(blob, org_id=org_id, connector_type=connector_type)
        if self.require_bound and not opened.bound:
            raise UnboundConfigError(
                f"{REQUIRE_BOUND_ENV}=1 refuses this unbound config blob (made by "
                f"encrypt_config without org_id and connector_type): bind the stored configs "
                f"with `orderflow keys rewrap`, or unset {REQUIRE_BOUND_ENV}"
            )
        return opened.config

    def open_config(
        self,
        blob: bytes,
        /,
        *,
        org_id: uuid.UUID | str | None = None,
        connector_type: str | None = None,
    ) -> OpenedConfig:
        """Decrypt ``blob`` and tell whether it was bound (``require_bound`` not applied).

        For ``orderflow keys rewrap``, which must read unbound blobs to bind them.
        """
        header = parse_header(blob)
        binding = binding_of(org_id, connector_type)
        aead = self._aead.get(header.key_id)
        if aead is None:
            raise EncryptionError(
                f"{TAG_FAILED}: no configured key has id {header.key_id.hex()} "
                f"(was {MASTER_KEY_ENV} changed after encryption? add the old key to "
                f"{OLD_KEYS_ENV})"
            )
        data = bytes(blob)
        nonce = data[header.size : header.size + NONCE_BYTES]
        sealed = data[header.size + NONCE_BYTES :]
        # Bindings to try, with whether each means "bound". A format 1 header does
        # not say, so the caller's binding is tried, then the empty one (unbound).
        attempts: list[tuple[Binding | None, bool]]
        if header.form is BlobForm.LEGACY:
            attempts = [(binding, True)] if binding is not None else []
            attempts.append((None, False))
        else:
            bound = header.form is BlobForm.BOUND
            attempts = [(binding if bound else None, bound)]
        for candidate, bound in attempts:
            try:
                plaintext = aead.decrypt(nonce, sealed, aad_for(header, candidate))
            except InvalidTag:
                continue
            return OpenedConfig(_config_from(plaintext), bound, header.version, header.key_id)
        raise EncryptionError(_CORRUPTED)

    def needs_rewrap(self, blob: bytes) -> bool:
        """Tell whether ``orderflow keys rewrap`` would rewrite ``blob``.

        True when it was encrypted with a key other than the primary, is not
        known from its header to be bound (unbound, or format 1).
        """
        return blob_key_id(blob) != self.keyring.primary_id or not blob_is_bound(blob)

    def rewrap(
        self, blob: bytes, *, org_id: uuid.UUID | str | None, connector_type: str | None
    ) -> bytes:
        """Re-encrypt ``blob`` under the primary key, bound to (org_id, connector_type).

        A bound blob keeps its binding (the context must be the one it was
        made with); an unbound one becomes bound to the context. Works with
        ``require_bound``, so that stored unbound blobs can be bound.
        """
        config = self.open_config(blob, org_id=org_id, connector_type=connector_type).config
        return self.encrypt_config(config, org_id=org_id, connector_type=connector_type)


def _config_from(plaintext: bytes) -> dict[str, Any]:
    try:
        config = json.loads(plaintext)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError: never echo the plaintext
        raise EncryptionError("decrypted config is not valid JSON") from None
    if not isinstance(config, dict):
        raise EncryptionError("decrypted config is not a JSON object")
    return config


class EncryptionService:
    """The seed's facade: class methods keyed from the environment.

    The cipher is cached per value of the ``ENCRYPTION_*`` variables, so
    changing ``ENCRYPTION_MASTER_KEY`` (as tests do) takes effect on the next call.
    """

    _cached: ClassVar[tuple[tuple[str | None, ...], ConfigCipher] | None] = None

    @classmethod
    def cipher(cls) -> ConfigCipher:
        """Return the cipher for the current environment."""
        env_key = tuple(
            os.environ.get(name) for name in (MASTER_KEY_ENV, OLD_KEYS_ENV, REQUIRE_BOUND_ENV)
        )
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
        """Encrypt with ``ENCRYPTION_MASTER_KEY``; bound if org_id and connector_type given."""
        return cls.cipher().encrypt_config(config, org_id=org_id, connector_type=connector_type)

    @classmethod
    def decrypt_config(
        cls,
        blob: bytes,
        *,
        org_id: uuid.UUID | str | None = None,
        connector_type: str | None = None,
    ) -> dict[str, Any]:
        """Decrypt ``blob`` with any configured key; a bound blob needs its own context."""
        return cls.cipher().decrypt_config(blob, org_id=org_id, connector_type=connector_type)
