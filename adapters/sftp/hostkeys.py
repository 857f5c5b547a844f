"""Host key pinning: parse what an operator pastes, compare with what the server presents.

Two ways to pin a server, usable together:

* ``host_key``: the server's public key line, ``"ssh-ed25519 AAAA..."`` (an optional
  trailing comment, or a leading ``known_hosts`` host pattern, is tolerated);
* ``host_key_fingerprint``: ``"SHA256:<base64>"`` as ``ssh-keygen -lf`` prints it (the
  whole ``ssh-keygen -l`` output line is accepted too).

Nothing here touches the network; everything is pure and cheap, so config validation
can call it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

__all__ = [
    "HostKeyError",
    "HostKeyPin",
    "PublicKeyLine",
    "fingerprint_sha256",
    "parse_fingerprint",
    "parse_host_key_line",
]

#: Key types we pin. DSA is gone from OpenSSH and paramiko; certificates are not pins.
SUPPORTED_KEY_TYPES: tuple[str, ...] = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)

# The host key *algorithms* that present a key of each type. An RSA key is offered as
# rsa-sha2-512/256 (ssh-rsa with SHA-1 is disabled in modern paramiko and OpenSSH).
_ALGORITHMS_FOR_TYPE: dict[str, tuple[str, ...]] = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}

_FINGERPRINT_TOKEN = re.compile(r"SHA256:([A-Za-z0-9+/]{43}=?)(?![A-Za-z0-9+/=])")
_SHA256_DIGEST_SIZE = 32


class HostKeyError(ValueError):
    """A host key line or fingerprint could not be parsed.

    The message describes the problem without repeating the input (config messages never
    echo values).
    """


@dataclass(frozen=True)
class PublicKeyLine:
    """A parsed public key: its type name and its wire-format blob."""

    key_type: str
    blob: bytes

    @property
    def fingerprint(self) -> str:
        """The ``SHA256:...`` fingerprint, exactly as ``ssh-keygen -lf`` prints it."""
        return fingerprint_sha256(self.blob)

    def line(self) -> str:
        """Return the canonical ``"<type> <base64>"`` line (no comment)."""
        return f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"


def fingerprint_sha256(blob: bytes) -> str:
    """Return the OpenSSH SHA256 fingerprint of a public key blob (unpadded base64)."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _blob_key_type(blob: bytes) -> str:
    """Return the key type string embedded at the start of an SSH public key blob."""
    if len(blob) < 4:
        raise HostKeyError("the key data is too short to be an SSH public key")
    (length,) = struct.unpack(">I", blob[:4])
    if length == 0 or length > 64 or len(blob) < 4 + length:
        raise HostKeyError("the key data is not an SSH public key")
    try:
        return blob[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        raise HostKeyError("the key data is not an SSH public key") from None


def parse_host_key_line(text: str) -> PublicKeyLine:
    """Parse ``"<type> <base64> [comment]"`` (or a ``known_hosts`` line) into a key.

    The type named in the line must match the type inside the base64 blob, so a key
    pasted with the wrong label is refused instead of silently never matching.
    """
    if not isinstance(text, str):
        raise HostKeyError("must be a string")
    tokens = text.strip().split()
    # A known_hosts line starts with a host pattern: skip it if the second token is a type.
    if (
        len(tokens) >= 3
        and tokens[0] not in SUPPORTED_KEY_TYPES
        and (tokens[1] in SUPPORTED_KEY_TYPES)
    ):
        tokens = tokens[1:]
    if len(tokens) < 2:
        raise HostKeyError("must be an OpenSSH public key line such as 'ssh-ed25519 AAAA...'")
    key_type, data = tokens[0], tokens[1]
    if key_type not in SUPPORTED_KEY_TYPES:
        raise HostKeyError(
            "has an unsupported key type (supported: " + ", ".join(SUPPORTED_KEY_TYPES) + ")"
        )
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise HostKeyError("has key data that is not valid base64") from None
    if _blob_key_type(blob) != key_type:
        raise HostKeyError("names a key type that does not match its key data")
    return PublicKeyLine(key_type, blob)


def parse_fingerprint(text: str) -> str:
    """Return the canonical ``SHA256:<base64 without padding>`` form of ``text``.

    Accepts the bare fingerprint or a whole ``ssh-keygen -l`` output line
    (``"256 SHA256:... comment (ED25519)"``). MD5 fingerprints are refused: they are
    weak, and OpenSSH has not printed them by default for years.
    """
    if not isinstance(text, str):
        raise HostKeyError("must be a string")
    stripped = text.strip()
    if re.search(r"(^|\s)MD5:", stripped) or re.fullmatch(
        r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){15}", stripped
    ):
        raise HostKeyError("is an MD5 fingerprint; use the SHA256 fingerprint (ssh-keygen -lf)")
    matches: list[str] = _FINGERPRINT_TOKEN.findall(stripped)
    if len(matches) != 1:
        raise HostKeyError("must be 'SHA256:<base64>' as printed by ssh-keygen -lf")
    encoded = matches[0].rstrip("=")
    try:
        digest = base64.b64decode(encoded + "=", validate=True)
    except (binascii.Error, ValueError):
        raise HostKeyError("must be 'SHA256:<base64>' as printed by ssh-keygen -lf") from None
    if len(digest) != _SHA256_DIGEST_SIZE:
        raise HostKeyError("must be 'SHA256:<base64>' as printed by ssh-keygen -lf")
    return "SHA256:" + encoded


@dataclass(frozen=True)
class HostKeyPin:
    """What a server's host key must be: a full key, a fingerprint, or both.

    Built only from operator configuration; there is no "accept on first use".
    """

    key: PublicKeyLine | None = None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.key is None and self.fingerprint is None:
            raise HostKeyError("a host key pin needs a key or a fingerprint")
        if (
            self.key is not None
            and self.fingerprint is not None
            and self.key.fingerprint != self.fingerprint
        ):
            raise HostKeyError("host_key and host_key_fingerprint name different keys")

    @classmethod
    def from_config(cls, host_key: str | None, host_key_fingerprint: str | None) -> HostKeyPin:
        """Build a pin from the two optional config values (empty strings mean absent)."""
        key = parse_host_key_line(host_key) if host_key else None
        fingerprint = parse_fingerprint(host_key_fingerprint) if host_key_fingerprint else None
        return cls(key=key, fingerprint=fingerprint)

    @property
    def expected_fingerprint(self) -> str:
        """The fingerprint the server must present (for messages and security logs)."""
        if self.fingerprint is not None:
            return self.fingerprint
        assert self.key is not None  # guaranteed by __post_init__
        return self.key.fingerprint

    def matches(self, presented_blob: bytes) -> bool:
        """Tell whether a presented public key blob is the pinned key."""
        if self.key is not None:
            return presented_blob == self.key.blob
        return fingerprint_sha256(presented_blob) == self.expected_fingerprint

    def preferred_algorithms(self, available: tuple[str, ...] | list[str]) -> list[str]:
        """Order host key algorithms so the pinned key's type is negotiated first.

        A server usually has several host keys; without this, the client could negotiate
        (say) the ECDSA key while the ed25519 key was pinned, and report a false mismatch.
        The other algorithms stay in the list, so a server that really lacks the pinned
        type still completes the key exchange and is reported as a mismatch.
        """
        first = list(_ALGORITHMS_FOR_TYPE.get(self.key.key_type, ())) if self.key else []
        first = [name for name in first if name in available]
        return first + [name for name in available if name not in first]
