"""The Avro schemas as a public contract: loading, docs, fingerprints, evolution.

The history check is the guard of the contract: every schema in ``schemas/``
must be backward AND forward compatible with every published version of it
in ``schemas/history/``, and its newest published version must be the
current schema. Adding a field without a default fails here.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from adapters.avro.compatibility import compatibility_errors, full_compatibility_errors
from schemas import loader
from schemas.loader import (
    HISTORY_DIR,
    NAMESPACE,
    SCHEMA_DIR,
    SCHEMA_NAMES,
    TYPE_NAMES,
    SchemaError,
    canonical_form,
    current_version,
    fingerprint_of,
    load_schema,
    publish,
    published_json,
    published_versions,
    schema_fingerprint,
    schema_json,
    schema_path,
)

#: Fingerprints of published versions. Messages in topics refer to these: a
#: published file must never change its canonical form. Add a line per publish.
PUBLISHED_FINGERPRINTS = {
    ("PushRequested", 1): "cd5daa5bfb35474c",
    ("PushResult", 1): "73d30378cb88a6a9",
}

ALL_FILES = sorted(SCHEMA_DIR.glob("*.avsc"))
HISTORY_FILES = sorted(HISTORY_DIR.glob("*/v*.avsc"))


def named_types(schema: Any) -> list[dict[str, Any]]:
    """Every record/enum/fixed definition inside a JSON schema."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, list):
        for branch in schema:
            found += named_types(branch)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "enum", "fixed"):
            found.append(schema)
            for field in schema.get("fields", []):
                found += named_types(field["type"])
        elif kind == "array":
            found += named_types(schema["items"])
        elif kind == "map":
            found += named_types(schema["values"])
        elif isinstance(kind, dict | list):
            found += named_types(kind)
    return found


def with_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    changed["fields"].insert(len(changed["fields"]) - 1, field)
    return changed


# -- files and docs --------------------------------------------------------------------------


def test_every_schema_file_is_a_known_name_in_the_namespace() -> None:
    stems = {path.stem for path in ALL_FILES}
    assert stems == set(SCHEMA_NAMES) | set(TYPE_NAMES)
    for path in ALL_FILES:
        raw = json.loads(path.read_text(encoding="utf-8"))
        assert raw["name"] == path.stem
        assert raw["namespace"] == NAMESPACE


@pytest.mark.parametrize("path", ALL_FILES + HISTORY_FILES, ids=lambda p: p.name)
def test_every_type_and_field_has_a_doc(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    types = named_types(raw)
    assert types, "a schema file defines at least one named type"
    for named in types:
        assert str(named.get("doc", "")).strip(), f"{named['name']} has no doc"
        for field in named.get("fields", []):
            assert str(field.get("doc", "")).strip(), f"{named['name']}.{field['name']} has no doc"


def test_docs_list_every_field_of_every_schema() -> None:
    text = (SCHEMA_DIR.parent / "docs" / "events.md").read_text(encoding="utf-8")
    parts = text.split("\n### `")[1:]
    sections = {part.split("`", 1)[0]: part.split("\n## ", 1)[0] for part in parts}
    for path in ALL_FILES:
        raw = json.loads(path.read_text(encoding="utf-8"))
        assert path.stem in sections, f"docs/events.md has no section ### `{path.stem}`"
        rows = re.findall(r"^\| `([a-z_]+)` \|", sections[path.stem], flags=re.MULTILINE)
        assert rows == [f["name"] for f in raw["fields"]], f"docs/events.md: {path.stem} table"


def test_shared_types_are_defined_once_and_reused() -> None:
    for name in SCHEMA_NAMES:
        names = [t["name"] for t in named_types(schema_json(name))]
        assert len(names) == len(set(names)), f"{name} defines a type twice: {names}"
    in_requests = {t["name"] for t in named_types(schema_json("PushRequested"))}
    assert {"DraftOrder", "OrderLine"} <= in_requests
    # The source files refer to the shared types by name instead of copying them.
    raw = json.loads(schema_path("PushRequested").read_text(encoding="utf-8"))
    order = next(f for f in raw["fields"] if f["name"] == "order")
    assert order["type"] == "DraftOrder"
    for type_name in TYPE_NAMES:
        assert any(
            type_name in {t["name"] for t in named_types(schema_json(event))}
            for event in SCHEMA_NAMES
        ), f"{type_name} is used by no event schema, so no compatibility check covers it"


def test_load_schema_is_cached_and_parsed() -> None:
    parsed = load_schema("PushRequested")
    assert parsed is load_schema("PushRequested")
    assert parsed["name"] == f"{NAMESPACE}.PushRequested"
    assert load_schema("DraftOrder")["name"] == f"{NAMESPACE}.DraftOrder"


def test_schema_json_returns_a_private_copy() -> None:
    first = schema_json("PushResult")
    first["fields"].clear()
    assert schema_json("PushResult")["fields"]


@pytest.mark.parametrize("name", ["Nope", "../PushResult", "", "Push Result"])
def test_unknown_or_invalid_names_raise_schema_error(name: str) -> None:
    with pytest.raises(SchemaError):
        schema_path(name)
    with pytest.raises(SchemaError):
        schema_json(name)


# -- fingerprints ----------------------------------------------------------------------------


def _rabin_crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO written out from the Avro specification, to check fastavro's."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_fingerprint_matches_the_specification_little_endian() -> None:
    # The Avro test suite's vector: "null" -> 7195948357588979594.
    assert fingerprint_of('"null"') == (7195948357588979594).to_bytes(8, "little")
    for name in SCHEMA_NAMES:
        form = canonical_form(schema_json(name))
        expected = _rabin_crc64_avro(form.encode("utf-8")).to_bytes(8, "little")
        assert schema_fingerprint(name) == expected


def test_fingerprint_ignores_docs_and_defaults_but_not_structure() -> None:
    base = schema_json("PushResult")
    reworded = copy.deepcopy(base)
    reworded["doc"] = "something else"
    reworded["fields"][0]["doc"] = "reworded"
    assert fingerprint_of(reworded) == fingerprint_of(base)
    reordered = copy.deepcopy(base)
    reordered["fields"].reverse()
    assert fingerprint_of(reordered) != fingerprint_of(base)


@pytest.mark.parametrize(("name", "version"), sorted(PUBLISHED_FINGERPRINTS))
def test_published_versions_never_change(name: str, version: int) -> None:
    fingerprint = fingerprint_of(published_json(name, version))
    assert fingerprint.hex() == PUBLISHED_FINGERPRINTS[(name, version)], (
        f"{name} v{version} was published; its canonical form must not change. "
        "Change schemas/<name>.avsc and publish a new version instead."
    )


def test_every_published_version_is_pinned_here() -> None:
    published = {(v.name, v.version) for name in SCHEMA_NAMES for v in published_versions(name)}
    assert published == set(PUBLISHED_FINGERPRINTS)


# -- the contract's evolution ----------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_current_schema_is_published(name: str) -> None:
    versions = published_versions(name)
    assert versions, f"{name} has never been published"
    newest = published_json(name, versions[-1].version)
    assert canonical_form(newest) == canonical_form(schema_json(name)), (
        f"schemas/{name}.avsc differs from its newest published version "
        f"v{versions[-1].version}: run `python -m schemas.loader publish {name}` "
        "(and pin the new fingerprint in this test)"
    )
    assert current_version(name) == versions[-1].version


@pytest.mark.parametrize(
    ("name", "version"),
    [(name, v.version) for name in SCHEMA_NAMES for v in published_versions(name)],
)
def test_current_schema_is_fully_compatible_with_every_published_version(
    name: str, version: int
) -> None:
    problems = full_compatibility_errors(published_json(name, version), schema_json(name))
    assert problems == [], f"{name} breaks compatibility with published v{version}: {problems}"


def test_the_history_check_rejects_a_required_field_without_default() -> None:
    published = published_json("PushRequested", 1)
    changed = with_field(
        schema_json("PushRequested"), {"name": "channel", "type": "string", "doc": "Sales channel."}
    )
    problems = full_compatibility_errors(published, changed)
    assert problems == [
        "backward: PushRequested.channel: the writer has no such field and the reader "
        "gives no default"
    ]


def test_the_history_check_accepts_a_new_optional_field() -> None:
    changed = with_field(
        schema_json("PushRequested"),
        {"name": "channel", "type": ["null", "string"], "default": None, "doc": "Channel."},
    )
    assert full_compatibility_errors(published_json("PushRequested", 1), changed) == []


# -- the compatibility checker itself ----------------------------------------------------------


def record(*fields: dict[str, Any], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "t", "fields": list(fields)}


def test_removing_a_field_without_default_breaks_forward_compatibility() -> None:
    old = record({"name": "a", "type": "string"}, {"name": "b", "type": "int"})
    new = record({"name": "a", "type": "string"})
    assert full_compatibility_errors(old, new) == [
        "forward: R.b: the writer has no such field and the reader gives no default"
    ]
    old_with_default = record(
        {"name": "a", "type": "string"}, {"name": "b", "type": "int", "default": 0}
    )
    assert full_compatibility_errors(old_with_default, new) == []


def test_type_changes_follow_the_promotion_rules() -> None:
    ints = record({"name": "n", "type": "int"})
    longs = record({"name": "n", "type": "long"})
    texts = record({"name": "n", "type": "string"})
    assert compatibility_errors(longs, ints) == []  # int data read as long
    assert compatibility_errors(ints, longs) == ["R.n: the writer's long cannot be read as int"]
    assert compatibility_errors(texts, ints) == ["R.n: the writer's int cannot be read as string"]


def test_unions_enums_arrays_maps_and_names() -> None:
    optional = record({"name": "x", "type": ["null", "string"], "default": None})
    required = record({"name": "x", "type": "string"})
    assert compatibility_errors(optional, required) == []
    assert compatibility_errors(required, optional) == [
        "R.x: the writer's null cannot be read as string"
    ]
    enum_ab = record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}})
    enum_abc = record(
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}}
    )
    assert compatibility_errors(enum_abc, enum_ab) == []
    assert compatibility_errors(enum_ab, enum_abc) == [
        "R.e: symbols ['C'] of the writer's enum are unknown to the reader"
    ]
    items_int = record({"name": "a", "type": {"type": "array", "items": "int"}})
    items_str = record({"name": "a", "type": {"type": "array", "items": "string"}})
    assert compatibility_errors(items_str, items_int) == [
        "R.a[]: the writer's int cannot be read as string"
    ]
    map_int = record({"name": "m", "type": {"type": "map", "values": "int"}})
    map_long = record({"name": "m", "type": {"type": "map", "values": "long"}})
    assert compatibility_errors(map_long, map_int) == []
    assert compatibility_errors(record(name="A"), record(name="B")) == [
        "A: the writer's record B cannot be read as record A"
    ]


def test_field_aliases_resolve_renames() -> None:
    old = record({"name": "old_name", "type": "string"})
    new = record({"name": "new_name", "type": "string", "aliases": ["old_name"]})
    assert compatibility_errors(new, old) == []


def test_recursive_types_terminate() -> None:
    node = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "value", "type": "int"},
            {"name": "next", "type": ["null", "Node"], "default": None},
        ],
    }
    assert full_compatibility_errors(node, copy.deepcopy(node)) == []


# -- publishing --------------------------------------------------------------------------------


def test_publish_writes_the_next_version_only_when_the_schema_changed(tmp_path: Path) -> None:
    first = publish("PushResult", tmp_path)
    assert first is not None
    assert first.version == 1
    assert first.path == tmp_path / "PushResult" / "v1.avsc"
    stored = json.loads(first.path.read_text(encoding="utf-8"))
    assert canonical_form(stored) == canonical_form(schema_json("PushResult"))
    assert stored["fields"][0]["doc"], "the published file keeps the docs"
    assert publish("PushResult", tmp_path) is None
    # Another (older) version on file: the current one becomes v2.
    first.path.write_text(json.dumps(record({"name": "a", "type": "int"}, name="PushResult")))
    second = publish("PushResult", tmp_path)
    assert second is not None
    assert second.version == 2
    assert [v.version for v in published_versions("PushResult", tmp_path)] == [1, 2]


def test_publish_refuses_shared_types(tmp_path: Path) -> None:
    with pytest.raises(SchemaError):
        publish("DraftOrder", tmp_path)


def test_command_line_lists_versions_and_fingerprints(capsys: pytest.CaptureFixture[str]) -> None:
    assert loader.main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{name} v{current_version(name)} {schema_fingerprint(name).hex()}" for name in SCHEMA_NAMES
    ]
