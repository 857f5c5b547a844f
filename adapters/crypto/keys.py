"""Master keys: parsing ``ENCRYPTION_MASTER_KEY`` and the keyring used for rotation.

Also the one encryption setting besides keys, ``ENCRYPTION_REQUIRE_BOUND``.

One key encrypts (the primary, ``ENCRYPTION_MASTER_KEY``); any key in the
keyring decrypts (the primary plus ``ENCRYPTION_OLD_KEYS``, comma separated),
so keys can be rotated without downtime. A key is known by its key id: the
first four bytes of SHA-256 over the key, stored in every blob's header.
Error messages never echo key material.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from domain.errors import OrderFlowError

MASTER_KEY_ENV = "ENCRYPTION_MASTER_KEY"
OLD_KEYS_ENV = "ENCRYPTION_OLD_KEYS"
REQUIRE_BOUND_ENV = "ENCRYPTION_REQUIRE_BOUND"
KEY_BYTES = 32
KEY_ID_BYTES = 4


class EncryptionError(OrderFlowError):
    """Encrypting or decrypting a connector config failed (seed name)."""


class MasterKeyError(EncryptionError):
    """A master key is missing or malformed."""


class EncryptionSettingError(EncryptionError):
    """An encryption setting other than a key (``ENCRYPTION_REQUIRE_BOUND``) is malformed."""


class UnboundConfigError(EncryptionError):
    """``ENCRYPTION_REQUIRE_BOUND=1`` refused to make or read an unbound config blob."""


def parse_require_bound(text: str | None) -> bool:
    """Read ``ENCRYPTION_REQUIRE_BOUND``: unset, empty or ``0`` is off, ``1`` is on.

    Anything else is refused rather than read as off: a typo must not
    silently weaken a setting that someone turned on to be strict.
    """
    value = (text or "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise EncryptionSettingError(
        f"{REQUIRE_BOUND_ENV} must be 0 or 1 (or unset), got {value[:32]!r}"
    )


def generate_master_key() -> str:
    """Return a new random 256-bit key as 64 hex characters."""
    return secrets.token_hex(KEY_BYTES)


def key_id_of(key: bytes) -> bytes:
    """Return the 4-byte id of ``key`` (a digest prefix; reveals nothing usable)."""
    return hashlib.sha256(b"orderflow-key-id\x00" + key).digest()[:KEY_ID_BYTES]


def parse_master_key(text: str | None, *, name: str = MASTER_KEY_ENV) -> bytes:
    """Decode a hex master key, or raise ``MasterKeyError`` saying what is wrong."""
    if text is None or not text.strip():
        raise MasterKeyError(
            f"{name} is not set: generate one with `orderflow keys generate` "
            f"(or python -c 'import os; print(os.urandom(32).hex())')"
        )
    cleaned = text.strip()
    if len(cleaned) != KEY_BYTES * 2:
        raise MasterKeyError(
            f"{name} must be {KEY_BYTES * 2} hex characters ({KEY_BYTES} bytes), "
            f"got {len(cleaned)} characters"
        )
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise MasterKeyError(f"{name} is not valid hex (expected 0-9, a-f)") from None


@dataclass(frozen=True)
class MasterKeyring:
    """The primary key plus older keys that may still decrypt."""

    primary: bytes
    older: tuple[bytes, ...] = ()
    _by_id: dict[bytes, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id: dict[bytes, bytes] = {}
        for key in (self.primary, *self.older):
            if len(key) != KEY_BYTES:
                raise MasterKeyError(f"a master key must be {KEY_BYTES} bytes, got {len(key)}")
            by_id.setdefault(key_id_of(key), key)
        object.__setattr__(self, "_by_id", by_id)

    def __repr__(self) -> str:
        # Never show key bytes; ids are enough to tell keyrings apart.
        ids = ", ".join(k.hex() for k in self._by_id)
        return f"MasterKeyring(primary_id={self.primary_id.hex()}, key_ids=[{ids}])"

    @property
    def primary_id(self) -> bytes:
        """Key id of the encrypting key."""
        return key_id_of(self.primary)

    def keys_by_id(self) -> dict[bytes, bytes]:
        """Every key of the keyring by its key id (a copy)."""
        return dict(self._by_id)

    def key_for(self, key_id: bytes) -> bytes | None:
        """Return the key with ``key_id``, or None if it is not in the keyring."""
        return self._by_id.get(key_id)

    @classmethod
    def from_hex(cls, primary: str | None, older: str | None = None) -> MasterKeyring:
        """Build a keyring from hex strings (``older`` is comma separated)."""
        primary_key = parse_master_key(primary)
        older_keys = tuple(
            parse_master_key(part, name=f"{OLD_KEYS_ENV}[{index}]")
            for index, part in enumerate(p for p in (older or "").split(",") if p.strip())
        )
        return cls(primary_key, older_keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MasterKeyring:
        """Build the keyring from ``ENCRYPTION_MASTER_KEY`` and ``ENCRYPTION_OLD_KEYS``."""
        env = os.environ if environ is None else environ
        return cls.from_hex(env.get(MASTER_KEY_ENV), env.get(OLD_KEYS_ENV))
