"""Load the pipeline's Avro schemas: parse, inline shared types, fingerprint, history.

Each ``schemas/<Name>.avsc`` file defines one named type of the namespace
:data:`NAMESPACE`. Event schemas (:data:`SCHEMA_NAMES`) refer to shared types
(:data:`TYPE_NAMES`, e.g. ``DraftOrder``) by name; :func:`schema_json` inlines
each referenced type at its first use, giving the *standalone* schema a
reader in any language can use on its own. That standalone form is what is
fingerprinted (CRC-64-AVRO of the Parsing Canonical Form, as Avro's
single-object encoding wants) and what is published.

Published versions live in ``schemas/history/<Name>/v<N>.avsc`` (standalone
form, never edited). The newest one must equal the current schema: change a
schema, then publish it with ``python -m schemas.loader publish <Name>``.
Readers keep every published version, so a message written with an older
version still decodes.

Everything is cached: parsed schemas are shared objects, do not mutate them.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import parse_schema, to_parsing_canonical_form

#: Namespace of every named type of the pipeline's contract.
NAMESPACE = "com.orderflow.erp.push.v1"
#: Event schemas: the values of the pipeline's topics, framed and fingerprinted.
SCHEMA_NAMES: tuple[str, ...] = ("PushRequested", "PushResult")
#: Shared named types the event schemas refer to (defined once, reused).
TYPE_NAMES: tuple[str, ...] = ("OrderLine", "DraftOrder")
#: Folder of the ``.avsc`` files.
SCHEMA_DIR = Path(__file__).resolve().parent
#: Folder of the published versions: ``history/<Name>/v<N>.avsc``.
HISTORY_DIR = SCHEMA_DIR / "history"

#: A JSON schema (as loaded from an ``.avsc`` file, or a fastavro parsed schema).
Schema = dict[str, Any]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


class SchemaError(Exception):
    """A schema file is missing, malformed, or refers to an unknown type."""


@dataclass(frozen=True)
class PublishedVersion:
    """One published version of an event schema (a file under ``history/``)."""

    name: str
    version: int
    path: Path


def schema_path(name: str) -> Path:
    """Return the path of ``schemas/<name>.avsc``; ``SchemaError`` if there is none."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise SchemaError(f"Invalid schema name: {name!r}")
    path = SCHEMA_DIR / f"{name}.avsc"
    if not path.is_file():
        raise SchemaError(f"Unknown schema: {name!r} (no {path.name} in {SCHEMA_DIR})")
    return path


def _read_json(path: Path) -> Schema:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"Cannot read schema file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"Schema file {path} does not hold a JSON object")
    return data


def _split_fullname(name: str, namespace: str | None) -> tuple[str, str | None]:
    """Return (fullname, namespace of that name) per the Avro naming rules."""
    if "." in name:
        return name, name.rsplit(".", 1)[0]
    if namespace:
        return f"{namespace}.{name}", namespace
    return name, None


@cache
def _file_index() -> dict[str, Path]:
    """Map the fullname of the type each ``.avsc`` file defines to that file."""
    index: dict[str, Path] = {}
    for path in sorted(SCHEMA_DIR.glob("*.avsc")):
        raw = _read_json(path)
        name = raw.get("name")
        if not isinstance(name, str):
            raise SchemaError(f"Schema file {path} does not define a named type")
        fullname, _ = _split_fullname(name, raw.get("namespace"))
        if fullname in index:
            raise SchemaError(f"Type {fullname} is defined in {index[fullname]} and {path}")
        index[fullname] = path
    return index


def _inline(node: Any, namespace: str | None, defined: set[str], stack: tuple[str, ...]) -> Any:
    """Return ``node`` with every reference to another file's type inlined once."""
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        fullname, _ = _split_fullname(node, namespace)
        if fullname in defined:
            return fullname
        path = _file_index().get(fullname)
        if path is None:
            raise SchemaError(f"Unknown type {node!r} (resolved as {fullname})")
        if fullname in stack:
            raise SchemaError(f"Circular reference between schema files: {(*stack, fullname)}")
        return _inline(_read_json(path), namespace, defined, (*stack, fullname))
    if isinstance(node, list):
        return [_inline(branch, namespace, defined, stack) for branch in node]
    if not isinstance(node, dict):
        raise SchemaError(f"Not a schema: {node!r}")
    kind = node.get("type")
    out = dict(node)
    if kind in _NAMED:
        fullname, inner_ns = _split_fullname(str(node["name"]), node.get("namespace", namespace))
        if fullname in defined:
            raise SchemaError(f"Type {fullname} is defined twice")
        defined.add(fullname)
        # Spell the namespace out, so the definition means the same wherever it lands.
        out["name"] = fullname.rsplit(".", 1)[-1]
        if inner_ns:
            out["namespace"] = inner_ns
        if kind in ("record", "error"):
            out["fields"] = [
                {**field, "type": _inline(field["type"], inner_ns, defined, stack)}
                for field in node.get("fields", [])
            ]
        return out
    if kind == "array":
        out["items"] = _inline(node["items"], namespace, defined, stack)
    elif kind == "map":
        out["values"] = _inline(node["values"], namespace, defined, stack)
    elif kind not in _PRIMITIVES:
        out["type"] = _inline(kind, namespace, defined, stack)
    return out


@cache
def _standalone(name: str) -> Schema:
    path = schema_path(name)
    raw = _read_json(path)
    if raw.get("name") != name:
        raise SchemaError(f"{path.name} must define a type named {name!r}, not {raw.get('name')!r}")
    result = _inline(raw, None, set(), (_split_fullname(name, raw.get("namespace"))[0],))
    assert isinstance(result, dict)  # a named type stays a JSON object
    return result


def schema_json(name: str) -> Schema:
    """Return the standalone JSON schema of ``name`` (shared types inlined; a fresh copy)."""
    return copy.deepcopy(_standalone(name))


@cache
def load_schema(name: str) -> Schema:
    """Return the fastavro-parsed schema of ``schemas/<name>.avsc`` (cached, shared).

    References to types of other files are resolved by inlining
    (see :func:`schema_json`). Raises ``SchemaError`` for an unknown name or
    a malformed file.
    """
    return parse(_standalone(name))


def parse(schema: Schema) -> Schema:
    """Parse a standalone JSON schema with fastavro; ``SchemaError`` if it is invalid."""
    try:
        parsed = parse_schema(copy.deepcopy(schema))
    except Exception as exc:
        raise SchemaError(f"Invalid Avro schema: {exc}") from exc
    if not isinstance(parsed, dict):
        raise SchemaError("Expected a named type (a JSON object) at the top of the schema")
    return parsed


def canonical_form(schema: Schema) -> str:
    """Return the Parsing Canonical Form of a standalone JSON schema (docs, defaults dropped)."""
    return str(to_parsing_canonical_form(copy.deepcopy(schema)))


def fingerprint_of(schema: Schema | str) -> bytes:
    """Return the 8-byte CRC-64-AVRO fingerprint of a schema, little-endian.

    These are the bytes Avro's single-object encoding puts after its marker.
    ``schema`` is a JSON schema, or a canonical form string (``'"null"'``).
    """
    form = schema if isinstance(schema, str) else canonical_form(schema)
    return bytes.fromhex(str(_fastavro_fingerprint(form, "CRC-64-AVRO")))


@cache
def schema_fingerprint(name: str) -> bytes:
    """Return the current schema's 8-byte CRC-64-AVRO fingerprint (``.hex()`` to print it).

    Stable: it depends only on the parsing canonical form, so editing docs
    does not change it, while any change to names, types, fields or their
    order does.
    """
    return fingerprint_of(_standalone(name))


# -- published versions -----------------------------------------------------------


def published_versions(name: str, history_dir: Path | None = None) -> tuple[PublishedVersion, ...]:
    """Return the published versions of ``name``, oldest first (empty if none).

    ``history_dir`` defaults to :data:`HISTORY_DIR`.
    """
    folder = (history_dir or HISTORY_DIR) / name
    if not folder.is_dir():
        return ()
    versions: list[PublishedVersion] = []
    for path in folder.iterdir():
        match = _VERSION_FILE.match(path.name)
        if match:
            versions.append(PublishedVersion(name, int(match.group(1)), path))
    return tuple(sorted(versions, key=lambda v: v.version))


@cache
def _published_json(name: str, version: int, history_dir: Path) -> Schema:
    for published in published_versions(name, history_dir):
        if published.version == version:
            return _read_json(published.path)
    raise SchemaError(f"Schema {name!r} has no published version {version}")


def published_json(name: str, version: int, history_dir: Path | None = None) -> Schema:
    """Return the standalone JSON of published version ``version`` of ``name`` (a copy)."""
    return copy.deepcopy(_published_json(name, version, history_dir or HISTORY_DIR))


@cache
def load_published(name: str, version: int) -> Schema:
    """Return the fastavro-parsed published version ``version`` of ``name`` (cached)."""
    return parse(_published_json(name, version, HISTORY_DIR))


def current_version(name: str) -> int:
    """Return the version number of the current schema of ``name``.

    That is the newest published version if the current schema equals it
    (same canonical form), else the next number: the current schema is
    then unpublished, which ``tests/unit/test_avro_schemas.py`` rejects.
    """
    versions = published_versions(name)
    if not versions:
        return 1
    newest = versions[-1].version
    if _same_canonical(_published_json(name, newest, HISTORY_DIR), _standalone(name)):
        return newest
    return newest + 1


def _same_canonical(left: Schema, right: Schema) -> bool:
    return canonical_form(left) == canonical_form(right)


def publish(name: str, history_dir: Path | None = None) -> PublishedVersion | None:
    """Write the current schema of ``name`` as its next published version.

    The file is the standalone schema, docs and defaults included (readers
    of old data need the defaults). Returns the new version, or ``None`` if
    the newest published version has the same canonical form already.
    """
    if name not in SCHEMA_NAMES:
        raise SchemaError(f"Only event schemas are published, not {name!r}")
    folder = history_dir or HISTORY_DIR
    current = _standalone(name)
    versions = published_versions(name, folder)
    if versions and _same_canonical(_read_json(versions[-1].path), current):
        return None
    number = versions[-1].version + 1 if versions else 1
    path = folder / name / f"v{number}.avsc"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(current, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")
    return PublishedVersion(name, number, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m schemas.loader list|publish NAME``."""
    parser = argparse.ArgumentParser(
        prog="python -m schemas.loader", description="Inspect and publish the Avro schemas."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print each event schema's version and fingerprint")
    publish_cmd = sub.add_parser("publish", help="store the current schema as its next version")
    publish_cmd.add_argument("name", choices=SCHEMA_NAMES)
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for name in SCHEMA_NAMES:
                print(f"{name} v{current_version(name)} {schema_fingerprint(name).hex()}")
            return 0
        published = publish(args.name)
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if published is None:
        print(f"{args.name}: the newest published version is current; nothing to do")
    else:
        print(f"{args.name}: published v{published.version} at {published.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
