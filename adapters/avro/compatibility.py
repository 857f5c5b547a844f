"""Static Avro schema compatibility, following the spec's schema resolution rules.

``compatibility_errors(reader, writer)`` lists every reason why data written
with ``writer`` could not be read with ``reader`` (empty: it can). On top of
it, :func:`full_compatibility_errors` checks both directions between an old
and a new version - what the pipeline promises for its public schemas:

- *backward*: the new schema reads old data (a consumer upgraded first);
- *forward*: the old schema reads new data (a producer upgraded first).

Adding a field with a default, or removing one that had a default, keeps
both; adding a field without a default breaks backward compatibility,
removing one without a default breaks forward compatibility.

Rules (Avro specification, "Schema Resolution"): primitives must match or be
promotable (int to long/float/double, long to float/double, float to double,
string and bytes both ways); named types match by unqualified name (or a
reader alias); records match fields by name (or reader field alias) and need a
default for each reader field the writer lacks; enums need every writer
symbol, unless the reader enum has a default; arrays and maps resolve their
items or values; a writer union needs each branch to resolve; a reader union
takes its first branch that matches. Logical types do not affect resolution.
"""

from __future__ import annotations

from typing import Any

from fastavro.schema import expand_schema

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS = frozenset(
    {
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    }
)


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        inner = schema["type"]
        return _kind(inner) if isinstance(inner, dict | list) else str(inner)
    return str(schema)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _describe(schema: Any) -> str:
    kind = _kind(schema)
    if isinstance(schema, dict) and "name" in schema and kind in ("record", "enum", "fixed"):
        return f"{kind} {_short(str(schema['name']))}"
    return kind


def _names_match(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    wanted = _short(str(writer["name"]))
    accepted = {_short(str(reader["name"]))} | {_short(str(a)) for a in reader.get("aliases", ())}
    return wanted in accepted


def _matches(reader: Any, writer: Any) -> bool:
    """Whether ``reader`` is a candidate for ``writer`` (the union branch selection rule)."""
    rk, wk = _kind(reader), _kind(writer)
    if rk in _PRIMITIVES or wk in _PRIMITIVES:
        return rk == wk or (wk, rk) in _PROMOTIONS
    if rk != wk:
        return False
    if rk in ("record", "enum", "fixed"):
        return _names_match(reader, writer)
    return True


def _errors(reader: Any, writer: Any, path: str, seen: set[tuple[str, str]]) -> list[str]:
    if _kind(writer) == "union":
        found: list[str] = []
        for branch in writer:
            found.extend(_errors(reader, branch, path, seen))
        return found
    if _kind(reader) == "union":
        for branch in reader:
            if _matches(branch, writer):
                return _errors(branch, writer, path, seen)
        choices = ", ".join(_describe(b) for b in reader)
        return [f"{path}: the writer's {_describe(writer)} matches no branch of [{choices}]"]
    if not _matches(reader, writer):
        return [f"{path}: the writer's {_describe(writer)} cannot be read as {_describe(reader)}"]
    kind = _kind(reader)
    if kind == "record":
        return _record_errors(reader, writer, path, seen)
    if kind == "enum":
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            return [f"{path}: symbols {missing} of the writer's enum are unknown to the reader"]
        return []
    if kind == "fixed" and reader["size"] != writer["size"]:
        return [f"{path}: fixed size {writer['size']} cannot be read as size {reader['size']}"]
    if kind == "array":
        return _errors(reader["items"], writer["items"], f"{path}[]", seen)
    if kind == "map":
        return _errors(reader["values"], writer["values"], f"{path}{{}}", seen)
    return []


def _record_errors(
    reader: dict[str, Any], writer: dict[str, Any], path: str, seen: set[tuple[str, str]]
) -> list[str]:
    pair = (str(reader["name"]), str(writer["name"]))
    if pair in seen:  # a recursive type: already being checked further up
        return []
    seen.add(pair)
    writer_fields = {f["name"]: f for f in writer["fields"]}
    found: list[str] = []
    for field in reader["fields"]:
        name = field["name"]
        candidates = [name, *field.get("aliases", ())]
        match = next((writer_fields[c] for c in candidates if c in writer_fields), None)
        where = f"{path}.{name}"
        if match is not None:
            found.extend(_errors(field["type"], match["type"], where, seen))
        elif "default" not in field:
            found.append(f"{where}: the writer has no such field and the reader gives no default")
    return found


def compatibility_errors(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Return why ``reader`` cannot read data written with ``writer`` (empty: it can).

    Both are standalone JSON schemas (named types defined before use).
    """
    expanded_reader = expand_schema(reader)
    expanded_writer = expand_schema(writer)
    return _errors(expanded_reader, expanded_writer, _short(str(reader.get("name", ""))), set())


def full_compatibility_errors(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Return the problems that stop ``new`` replacing ``old`` in either direction.

    Each problem is prefixed with ``backward:`` (the new schema cannot read
    old data) or ``forward:`` (the old schema cannot read new data).
    """
    return [f"backward: {p}" for p in compatibility_errors(new, old)] + [
        f"forward: {p}" for p in compatibility_errors(old, new)
    ]
