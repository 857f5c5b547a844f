"""Deterministic dropzone paths; ids must be UUIDs and remote_dir must be sane."""

from __future__ import annotations

import posixpath
import uuid

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from adapters.connectors.dropzone_json_v1 import (
    DocumentError,
    canonical_uuid,
    dropzone_path,
    dropzone_target,
    normalise_remote_dir,
    remote_dir_problem,
)

ORG = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
ORDER = uuid.UUID("11111111-2222-4333-8444-555555555555")


def test_path_layout() -> None:
    assert dropzone_path("/inbound", ORG, ORDER) == f"/inbound/{ORG}/{ORDER}.json"
    target = dropzone_target("/inbound/", str(ORG), str(ORDER))
    assert (target.remote_dir, target.org_dir_name, target.filename) == (
        "/inbound",
        str(ORG),
        f"{ORDER}.json",
    )


@pytest.mark.parametrize(
    "spelling",
    [
        str(ORDER),
        str(ORDER).upper(),
        ORDER.hex,
        "{" + str(ORDER) + "}",
        "urn:uuid:" + str(ORDER),
        ORDER,
    ],
)
def test_id_spellings_give_the_same_path(spelling) -> None:
    assert dropzone_path("/in", ORG, spelling) == f"/in/{ORG}/{ORDER}.json"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/srv/drop", "/srv/drop"),
        ("/srv/drop/", "/srv/drop"),
        ("/srv//drop/./x", "/srv/drop/x"),
        ("outbox", "outbox"),
        ("./outbox/", "outbox"),
        ("/", "/"),
        (".", "."),
        ("/äöü/日本", "/äöü/日本"),
        ("a..b/..c/d..", "a..b/..c/d.."),  # dots inside names are fine
    ],
)
def test_remote_dir_normalisation(raw: str, normal: str) -> None:
    assert normalise_remote_dir(raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "..",
        "/srv/../etc",
        "/srv/..",
        "../x",
        "a\\..\\b",
        "/srv/drop\x00",
        "/srv/\x1b[31m",
        "/srv/\x7f",
        "/srv/\x85",
        "",
        " /srv",
        "/srv\t",
        "/srv/\ud800",
    ],
)
def test_bad_remote_dirs_are_refused(raw: str) -> None:
    assert remote_dir_problem(raw) is not None
    with pytest.raises(ValueError, match="remote_dir"):
        normalise_remote_dir(raw)


@pytest.mark.parametrize(
    "bad",
    [
        "../../etc/passwd",
        "..",
        "",
        "x" * 36,
        str(ORDER) + "/..",
        "not-a-uuid",
        None,
        42,
        b"id",
        "1" * 1000,
        str(ORDER)[:-1],
    ],
)
def test_ids_must_be_uuids(bad) -> None:
    with pytest.raises(DocumentError, match="must be a UUID"):
        canonical_uuid(bad, "draft_order_id")
    with pytest.raises(ValueError):
        dropzone_path("/in", ORG, bad)
    with pytest.raises(ValueError):
        dropzone_path("/in", bad, ORDER)


@given(st.uuids(), st.uuids())
def test_path_is_deterministic_and_confined(org: uuid.UUID, order: uuid.UUID) -> None:
    first = dropzone_path("/drop", org, order)
    assert first == dropzone_path("/drop/", str(org).upper(), order.hex)
    assert posixpath.dirname(posixpath.dirname(first)) == "/drop"
    assert posixpath.normpath(first) == first


@given(st.text(max_size=80), st.text(max_size=80))
def test_arbitrary_ids_never_escape_the_dropzone(org: str, order: str) -> None:
    try:
        path = dropzone_path("/drop", org, order)
    except ValueError:
        return
    # Only real UUIDs get through, in canonical form.
    assert path == f"/drop/{uuid.UUID(org)}/{uuid.UUID(order)}.json"


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "", "x..y", "\\", "\x00", "\n"]), max_size=8))
def test_normalised_remote_dir_never_climbs(parts: list[str]) -> None:
    raw = "/" + "/".join(parts)
    try:
        normal = normalise_remote_dir(raw)
    except ValueError:
        assert remote_dir_problem(raw) is not None
        return
    assert ".." not in normal.split("/")
    assert posixpath.normpath(normal) == normal
    assert not any(ord(c) < 32 for c in normal)


@given(st.text(max_size=60))
def test_remote_dir_check_is_total(raw: str) -> None:
    # Whatever the input: either a normalised path or a ValueError with a fixed message.
    try:
        normal = normalise_remote_dir(raw)
    except ValueError as exc:
        assert str(exc).startswith("remote_dir must ")
        return
    assume(normal not in ("/", "."))
    assert normal.split("/")[-1] not in ("", ".", "..")
