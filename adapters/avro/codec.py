"""Avro single-object encoding of the pipeline's events, with schema evolution.

Every message value is framed as Avro's *single-object encoding*::

    C3 01 | 8-byte CRC-64-AVRO fingerprint of the writer schema (little-endian) | Avro body

so a consumer knows which schema wrote a message without a schema registry,
and rejects what it does not know. A codec knows, for each event schema, the
*reader* schema (the current one) and every published *writer* version; a
message written with an older version is decoded through Avro schema
resolution into the current shape (new optional fields get their defaults).

Errors (all carry a ``reason`` string meant for the DLQ):

- :class:`UndecodableMessage` - not a single-object message (empty, wrong
  magic, truncated) or a body that is not valid Avro for its schema;
- :class:`InvalidMessage` (a subclass) - decoded, but its content breaks the
  contract (e.g. a quantity that is not a decimal number);
- :class:`UnknownSchema` - the fingerprint names no schema this codec knows,
  or a schema other than the one expected on this topic;
- :class:`InvalidRecord` (also a ``ValueError``) - a record given to
  ``encode`` does not fit its schema.

The module-level functions use :func:`default_codec`: the current schemas of
``schemas/`` plus their published history.

Size: a little over 400 lines, kept whole: encoding, decoding and the schema
versions' read plans share the codec's caches.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from adapters.avro.compatibility import compatibility_errors
from domain.errors import OrderFlowError
from schemas.loader import (
    SCHEMA_NAMES,
    Schema,
    current_version,
    fingerprint_of,
    parse,
    published_json,
    published_versions,
    schema_json,
)

#: The two marker bytes of Avro single-object encoding.
MAGIC = b"\xc3\x01"
#: Length of a schema fingerprint in the frame.
FINGERPRINT_SIZE = 8
#: Length of the frame header: marker + fingerprint.
HEADER_SIZE = len(MAGIC) + FINGERPRINT_SIZE
#: Longest ``reason`` an exception of this module carries.
MAX_REASON_LENGTH = 500
#: ``event_type`` / schema name of the push request event.
PUSH_REQUESTED = "PushRequested"
#: ``event_type`` / schema name of the push result event.
PUSH_RESULT = "PushResult"

_ELLIPSIS = "\u2026"


def bound_text(text: str, limit: int) -> str:
    """Return ``text`` cut to at most ``limit`` characters, ending with an ellipsis if cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + _ELLIPSIS


class AvroCodecError(OrderFlowError):
    """Base of the codec's errors; ``reason`` says what is wrong, in one bounded line."""

    def __init__(self, reason: str) -> None:
        self.reason = bound_text(" ".join(reason.split()), MAX_REASON_LENGTH)
        super().__init__(self.reason)


class UndecodableMessage(AvroCodecError):  # noqa: N818 - public name of the contract
    """The bytes are not a decodable single-object Avro message (bad frame or body)."""


class InvalidMessage(UndecodableMessage):
    """The message decoded, but its content breaks the contract (e.g. a bad decimal)."""


class UnknownSchema(AvroCodecError):  # noqa: N818 - public name of the contract
    """The message's schema fingerprint is unknown here, or not the schema expected.

    ``fingerprint`` holds the 8 fingerprint bytes of the message, if it had any.
    """

    def __init__(self, reason: str, *, fingerprint: bytes | None = None) -> None:
        super().__init__(reason)
        self.fingerprint = fingerprint


class InvalidRecord(AvroCodecError, ValueError):  # noqa: N818 - pairs with InvalidMessage
    """A record given to ``encode`` does not fit its schema (nothing was encoded)."""


@dataclass(frozen=True)
class SchemaVersion:
    """One version of an event schema: its standalone JSON, parsed form and fingerprint."""

    name: str
    version: int
    schema: Schema = field(repr=False, compare=False)
    parsed: Schema = field(init=False, repr=False, compare=False)
    fingerprint: bytes = field(init=False)

    def __post_init__(self) -> None:
        declared = str(self.schema.get("name", "")).rsplit(".", 1)[-1]
        if declared != self.name:
            raise ValueError(f"Schema version {self.name} v{self.version} defines {declared!r}")
        object.__setattr__(self, "parsed", parse(self.schema))
        object.__setattr__(self, "fingerprint", fingerprint_of(self.schema))

    @classmethod
    def current(cls, name: str) -> SchemaVersion:
        """Return the current schema of ``name`` (from ``schemas/<name>.avsc``)."""
        return cls(name, current_version(name), schema_json(name))

    @classmethod
    def published(cls, name: str, version: int) -> SchemaVersion:
        """Return published version ``version`` of ``name`` (from ``schemas/history``)."""
        return cls(name, version, published_json(name, version))


class Decoded(NamedTuple):
    """A decoded message: the schema name (= ``event_type``) and the record."""

    schema_name: str
    record: dict[str, Any]


@dataclass(frozen=True)
class _ReadPlan:
    name: str
    version: int
    writer: Schema
    reader: Schema | None  # None: the writer schema is the reader schema


_Prepare = Callable[[Mapping[str, Any]], dict[str, Any]]


class AvroCodec:
    """Encodes and decodes framed Avro records of a fixed set of schema versions.

    ``readers`` gives, per schema name, the version records are decoded
    into. ``writers`` lists further versions whose messages can be read
    (each must be compatible with its reader, checked here). Records are
    encoded with the reader version unless ``write_versions`` pins another
    known version of that name - useful while consumers still run code that
    does not know the newest version. ``validate`` checks each record
    against its schema before writing (fastavro would otherwise silently
    truncate a float into an ``int`` field, for instance).
    """

    def __init__(
        self,
        readers: Iterable[SchemaVersion],
        writers: Iterable[SchemaVersion] = (),
        *,
        write_versions: Mapping[str, int] | None = None,
        validate: bool = True,
    ) -> None:
        self._readers: dict[str, SchemaVersion] = {}
        for reader in readers:
            if reader.name in self._readers:
                raise ValueError(f"Two reader schemas for {reader.name}")
            self._readers[reader.name] = reader
        known: dict[tuple[str, int], SchemaVersion] = {
            (r.name, r.version): r for r in self._readers.values()
        }
        for writer in writers:
            if writer.name not in self._readers:
                raise ValueError(f"Writer schema {writer.name} v{writer.version} has no reader")
            known.setdefault((writer.name, writer.version), writer)
        self._plans: dict[bytes, _ReadPlan] = {}
        for version in known.values():
            reader = self._readers[version.name]
            if version.fingerprint != reader.fingerprint:
                problems = compatibility_errors(reader.schema, version.schema)
                if problems:
                    raise ValueError(
                        f"{version.name} v{reader.version} cannot read v{version.version}: "
                        + "; ".join(problems)
                    )
            other = self._plans.get(version.fingerprint)
            if other is not None and other.name != version.name:
                raise ValueError(f"Fingerprint clash between {other.name} and {version.name}")
            if other is not None and other.reader is None:
                continue  # same canonical form as the reader: keep the direct plan
            self._plans[version.fingerprint] = _ReadPlan(
                version.name,
                version.version,
                version.parsed,
                None if version.fingerprint == reader.fingerprint else reader.parsed,
            )
        self._writers: dict[str, SchemaVersion] = dict(self._readers)
        for name, number in (write_versions or {}).items():
            pinned = known.get((name, number))
            if pinned is None:
                raise ValueError(f"Cannot write {name} v{number}: that version is not known")
            self._writers[name] = pinned
        self._prepare: dict[str, _Prepare] = {
            name: _preparer(version) for name, version in self._writers.items()
        }
        self._validate = validate

    @classmethod
    def from_schemas(
        cls,
        names: Iterable[str] = SCHEMA_NAMES,
        *,
        write_versions: Mapping[str, int] | None = None,
        validate: bool = True,
    ) -> AvroCodec:
        """Return a codec of the current ``schemas/`` and every published version of them."""
        names = tuple(names)
        writers = [
            SchemaVersion.published(name, published.version)
            for name in names
            for published in published_versions(name)
        ]
        return cls(
            [SchemaVersion.current(name) for name in names],
            writers,
            write_versions=write_versions,
            validate=validate,
        )

    @property
    def schema_names(self) -> tuple[str, ...]:
        """Names of the schemas this codec reads and writes."""
        return tuple(self._readers)

    def writer(self, name: str) -> SchemaVersion:
        """Return the version ``encode`` writes for ``name``."""
        try:
            return self._writers[name]
        except KeyError:
            raise UnknownSchema(f"No schema named {name!r} (known: {self.schema_names})") from None

    def known_fingerprints(self) -> dict[bytes, tuple[str, int]]:
        """Map each fingerprint this codec decodes to its (schema name, version)."""
        return {fp: (plan.name, plan.version) for fp, plan in self._plans.items()}

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Return ``record`` as a framed single-object Avro message of schema ``name``.

        Top-level uuid fields take ``uuid.UUID`` or its text, timestamp fields
        an aware ``datetime`` or ISO-8601 text with an offset; bounded text
        fields (``maxLength``) are cut; ``schema_version`` is set to the
        version written. Raises ``InvalidRecord`` if the record does not fit.
        """
        version = self.writer(name)
        prepared = self._prepare[name](record)
        if self._validate:
            try:
                validate(prepared, version.parsed, raise_errors=True)
            except ValidationError as exc:
                problems = "; ".join(str(e) for e in exc.errors) or str(exc)
                raise InvalidRecord(f"{name} record does not fit its schema: {problems}") from None
        buffer = io.BytesIO()
        buffer.write(MAGIC)
        buffer.write(version.fingerprint)
        try:
            schemaless_writer(buffer, version.parsed, prepared)
        except Exception as exc:  # fastavro raises many kinds; all mean "does not fit"
            raise InvalidRecord(f"{name} record does not fit its schema: {exc}") from None
        return buffer.getvalue()

    def decode(
        self, data: bytes | bytearray | memoryview | None, expected: str | None = None
    ) -> Decoded:
        """Decode a framed message into (schema name, record in the reader's shape).

        Uuid fields come back as ``uuid.UUID``, timestamps as aware UTC
        ``datetime``. With ``expected``, a message of another schema raises
        ``UnknownSchema``. Raises ``UndecodableMessage`` for anything that
        is not a complete, valid message.
        """
        if data is None:
            raise UndecodableMessage("Message has no value (a tombstone)")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise UndecodableMessage(f"Message value is a {type(data).__name__}, not bytes")
        size = len(data)
        if size == 0:
            raise UndecodableMessage("Message is empty")
        if data[:2] != MAGIC:
            raise UndecodableMessage(
                f"Not Avro single-object encoding: starts with {bytes(data[:2]).hex()}, "
                f"expected {MAGIC.hex()}"
            )
        if size < HEADER_SIZE:
            raise UndecodableMessage(
                f"Truncated message: {size} bytes, the single-object header alone has {HEADER_SIZE}"
            )
        fingerprint = bytes(data[2:HEADER_SIZE])
        plan = self._plans.get(fingerprint)
        if plan is None:
            raise UnknownSchema(
                f"Unknown schema fingerprint {fingerprint.hex()} (CRC-64-AVRO)",
                fingerprint=fingerprint,
            )
        if expected is not None and plan.name != expected:
            raise UnknownSchema(
                f"Expected a {expected} message, got {plan.name} v{plan.version}",
                fingerprint=fingerprint,
            )
        stream = io.BytesIO(data)
        stream.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(stream, plan.writer, plan.reader)
        except Exception as exc:  # corrupt bodies raise EOFError, IndexError, ValueError ...
            detail = str(exc) or "unexpected end of data"
            raise UndecodableMessage(
                f"Corrupt {plan.name} v{plan.version} body: {type(exc).__name__}: {detail}"
            ) from None
        left = size - stream.tell()
        if left:
            raise UndecodableMessage(
                f"Corrupt {plan.name} v{plan.version} body: {left} bytes left after the record"
            )
        if not isinstance(record, dict):  # pragma: no cover - event schemas are records
            raise UndecodableMessage(f"{plan.name} body is not a record")
        return Decoded(plan.name, record)


# -- record preparation for encoding ---------------------------------------------------


def _branches(field_type: Any) -> list[Any]:
    return list(field_type) if isinstance(field_type, list) else [field_type]


def _logical(field_type: Any) -> str | None:
    for branch in _branches(field_type):
        if isinstance(branch, dict) and isinstance(branch.get("logicalType"), str):
            return str(branch["logicalType"])
    return None


def _to_uuid_text(name: str, value: Any) -> Any:
    if value is None or isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise InvalidRecord(f"Field {name} is not a UUID: {value!r}") from None
    return value  # a wrong type: validation reports it


def _to_datetime(name: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidRecord(f"Field {name} is not an ISO-8601 timestamp: {value!r}") from None
    if isinstance(value, datetime) and value.tzinfo is None:
        raise InvalidRecord(f"Field {name} is a naive datetime; give a timezone (UTC)")
    return value


def _preparer(version: SchemaVersion) -> _Prepare:
    """Return the function that turns a caller's record into what fastavro writes."""
    steps: list[tuple[str, Callable[[str, Any], Any]]] = []
    for field_def in version.schema.get("fields", []):
        name = str(field_def["name"])
        logical = _logical(field_def["type"])
        if logical == "uuid":
            steps.append((name, _to_uuid_text))
        elif logical in ("timestamp-micros", "timestamp-millis"):
            steps.append((name, _to_datetime))
        limit = field_def.get("maxLength")
        if isinstance(limit, int):
            steps.append((name, _bounder(limit)))
    has_version = any(f["name"] == "schema_version" for f in version.schema.get("fields", []))
    number = version.version

    def prepare(record: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(record, Mapping):
            raise InvalidRecord(f"A {version.name} record must be a mapping, not {type(record)}")
        prepared = dict(record)
        for name, step in steps:
            if name in prepared:
                prepared[name] = step(name, prepared[name])
        if has_version:
            prepared["schema_version"] = number
        return prepared

    return prepare


def _bounder(limit: int) -> Callable[[str, Any], Any]:
    def bound(_name: str, value: Any) -> Any:
        return bound_text(value, limit) if isinstance(value, str) else value

    return bound


# -- the default codec ------------------------------------------------------------------


@cache
def default_codec() -> AvroCodec:
    """Return the codec of ``schemas/`` (current schemas plus published history), cached."""
    return AvroCodec.from_schemas()


def encode(name: str, record: Mapping[str, Any]) -> bytes:
    """Encode ``record`` with the current schema ``name`` (see :meth:`AvroCodec.encode`)."""
    return default_codec().encode(name, record)


def encode_push_requested(record: Mapping[str, Any]) -> bytes:
    """Encode a ``PushRequested`` record (built by ``records.push_requested_record``)."""
    return default_codec().encode(PUSH_REQUESTED, record)


def encode_push_result(record: Mapping[str, Any]) -> bytes:
    """Encode a ``PushResult`` record (built by ``records.push_result_record``)."""
    return default_codec().encode(PUSH_RESULT, record)


def decode(data: bytes | bytearray | memoryview | None) -> Decoded:
    """Decode any known message into (schema name, record) (see :meth:`AvroCodec.decode`)."""
    return default_codec().decode(data)


def decode_push_requested(data: bytes | bytearray | memoryview | None) -> dict[str, Any]:
    """Decode a ``PushRequested`` message; another schema raises ``UnknownSchema``."""
    return default_codec().decode(data, PUSH_REQUESTED).record


def decode_push_result(data: bytes | bytearray | memoryview | None) -> dict[str, Any]:
    """Decode a ``PushResult`` message; another schema raises ``UnknownSchema``."""
    return default_codec().decode(data, PUSH_RESULT).record
