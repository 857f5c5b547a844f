"""The byte layout of an encrypted connector config, and its associated data.

Format version 2 (written since unbound blobs exist)::

    b"OFC" | version 0x02 | form (1) | key id (4) | nonce (12) | ciphertext | tag (16)

``form`` is ``0x01`` for a *bound* blob (made with an organisation and a
connector type) and ``0x00`` for an *unbound* one (made without: the seed's
``EncryptionService.encrypt_config(config)``). The associated data of AES-GCM is::

    b"orderflow/erp_connection/v2" | 0x00 | header (9 bytes) [| org id | 0x00 | connector type]

where the bracketed binding is present for a bound blob only (org id as the
canonical lower-case UUID text, connector type as UTF-8). The header,
form byte included, is in the associated data, so turning a bound blob into
an unbound one (or back) by editing the form byte fails verification like any
other flipped bit.

Format version 1 (read only; everything stored before version 2)::

    b"OFC" | version 0x01 | key id (4) | nonce (12) | ciphertext | tag (16)

with associated data ``b"orderflow/erp_connection/v1" | 0x00 | header (8 bytes) |
org id | 0x00 | connector type``, where a blob made without context has an
empty org id and connector type. Its header does not say which, so a reader
tries the caller's binding first and then the empty one (a legacy unbound
blob). ``orderflow keys rewrap`` rewrites version 1 blobs as version 2.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import Enum

from adapters.crypto.keys import KEY_ID_BYTES, EncryptionError

MAGIC = b"OFC"
LEGACY_FORMAT_VERSION = 1
FORMAT_VERSION = 2
NONCE_BYTES = 12
TAG_BYTES = 16
#: Header of the current format: magic, version, form, key id.
HEADER_BYTES = len(MAGIC) + 2 + KEY_ID_BYTES
LEGACY_HEADER_BYTES = len(MAGIC) + 1 + KEY_ID_BYTES
TAG_FAILED = "authentication tag verification failed"

FORM_UNBOUND = 0x00
FORM_BOUND = 0x01

_AAD_V1 = b"orderflow/erp_connection/v1\x00"
_AAD_V2 = b"orderflow/erp_connection/v2\x00"


class BlobForm(Enum):
    """What a blob's header says about its binding."""

    BOUND = "bound"
    UNBOUND = "unbound"
    #: Format version 1: bound or legacy unbound; only decryption can tell.
    LEGACY = "legacy"


#: (canonical org id, connector type) that a bound blob is tied to.
Binding = tuple[str, str]


@dataclass(frozen=True)
class Header:
    """A parsed, well-formed header (not yet authenticated)."""

    raw: bytes
    version: int
    form: BlobForm
    key_id: bytes

    @property
    def size(self) -> int:
        """Length of the header in bytes (the nonce follows it)."""
        return len(self.raw)


def binding_of(org_id: uuid.UUID | str | None, connector_type: str | None) -> Binding | None:
    """Return the binding for a context, ``None`` for no context; both or neither.

    Half a context is refused rather than guessed: a blob bound to an
    organisation but to no connector type (or the reverse) is a mistake that
    would otherwise only show up as a failed push much later.
    """
    if org_id is None and connector_type is None:
        return None
    if org_id is None or connector_type is None:
        given = "org_id" if org_id is not None else "connector_type"
        raise EncryptionError(
            f"org_id and connector_type bind a config together: pass both (a bound blob) "
            f"or neither (an unbound blob), got only {given}"
        )
    try:
        org = str(uuid.UUID(str(org_id)))
    except ValueError:
        raise EncryptionError(f"org_id must be a UUID, got {str(org_id)[:64]!r}") from None
    if not isinstance(connector_type, str) or not connector_type:
        raise EncryptionError("connector_type must be a non-empty string")
    return org, connector_type


def make_header(key_id: bytes, *, bound: bool) -> Header:
    """The current-format header for a blob encrypted under ``key_id``."""
    form = FORM_BOUND if bound else FORM_UNBOUND
    raw = MAGIC + bytes([FORMAT_VERSION, form]) + key_id
    return Header(raw, FORMAT_VERSION, BlobForm.BOUND if bound else BlobForm.UNBOUND, key_id)


def parse_header(blob: bytes) -> Header:
    """Parse a blob's header; ``EncryptionError`` (seed's phrase) if it is malformed."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise EncryptionError(f"encrypted config must be bytes, got {type(blob).__name__}")
    header = _read_header(bytes(blob[:HEADER_BYTES]))
    if len(blob) < header.size + NONCE_BYTES + TAG_BYTES:
        raise EncryptionError(_BAD_HEADER)
    return header


_BAD_HEADER = f"{TAG_FAILED}: not an OrderFlow encrypted config (bad header)"


def _read_header(data: bytes) -> Header:
    """Parse the header at the start of ``data`` (which may hold more than the header)."""
    if len(data) <= len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise EncryptionError(_BAD_HEADER)
    version = data[len(MAGIC)]
    if version not in (LEGACY_FORMAT_VERSION, FORMAT_VERSION):
        # Still the seed's phrase: a flipped version bit is corruption to the operator.
        raise EncryptionError(
            f"{TAG_FAILED}: unsupported encrypted config format version {version}"
        )
    size = HEADER_BYTES if version == FORMAT_VERSION else LEGACY_HEADER_BYTES
    if len(data) < size:
        raise EncryptionError(_BAD_HEADER)
    if version == LEGACY_FORMAT_VERSION:
        return Header(data[:size], version, BlobForm.LEGACY, data[len(MAGIC) + 1 : size])
    form_byte = data[len(MAGIC) + 1]
    if form_byte not in (FORM_UNBOUND, FORM_BOUND):
        raise EncryptionError(f"{TAG_FAILED}: unknown encrypted config form {form_byte}")
    form = BlobForm.BOUND if form_byte == FORM_BOUND else BlobForm.UNBOUND
    return Header(data[:size], version, form, data[len(MAGIC) + 2 : size])


def associated_data(
    header: bytes, org_id: uuid.UUID | str | None, connector_type: str | None
) -> bytes:
    """The AES-GCM associated data of a blob with ``header`` in this context.

    For a version 2 header the context is used only if the header says bound
    (then it is required); an unbound blob's associated data is its header
    alone, so it decrypts in any context. For a version 1 header the context
    is bound as it always was (none: the empty binding).
    """
    return aad_for(_read_header(bytes(header)), binding_of(org_id, connector_type))


def aad_for(header: Header, binding: Binding | None) -> bytes:
    """The associated data of a parsed header with ``binding`` (see ``associated_data``)."""
    if header.version == LEGACY_FORMAT_VERSION:
        org, kind = binding or ("", "")
        return _AAD_V1 + header.raw + org.encode() + b"\x00" + kind.encode()
    if header.form is BlobForm.UNBOUND:
        return _AAD_V2 + header.raw
    if binding is None:
        raise EncryptionError(
            f"{TAG_FAILED}: this config is bound to an organisation and connector type; "
            f"pass org_id and connector_type to decrypt it"
        )
    org, kind = binding
    return _AAD_V2 + header.raw + org.encode() + b"\x00" + kind.encode()


def blob_form(blob: bytes) -> BlobForm:
    """What ``blob``'s header says: bound, unbound, or legacy (format 1, either)."""
    return parse_header(blob).form


def blob_is_bound(blob: bytes) -> bool:
    """True when ``blob``'s header says it is bound to an organisation and connector type.

    Read from the header alone (no key needed); the header is authenticated
    at decryption, so a forged form byte cannot make a blob decrypt. A format
    1 blob answers False (its header cannot say; ``ConfigCipher.open_config``
    tells by decrypting, and ``orderflow keys rewrap`` rewrites it as format 2).
    """
    return blob_form(blob) is BlobForm.BOUND


def blob_key_id(blob: bytes) -> bytes:
    """Return the key id in a blob's header (raises ``EncryptionError`` if malformed)."""
    return parse_header(blob).key_id
