"""The relay store's column casts (bytea straight to bytes, jsonb via the JSON scanner)."""

from __future__ import annotations

from adapters.postgres.outbox_relay import _bytea, _jsonb


def test_bytea_hex_and_escape_formats_become_bytes() -> None:
    assert _bytea("\\x00ff41", None) == b"\x00\xffA"
    assert _bytea("abc\\000", None) == b"abc\x00"  # a server that ignored bytea_output
    assert _bytea(None, None) is None


def test_jsonb_parses_one_document() -> None:
    assert _jsonb('{"event_id": "e", "attempt": "0"}', None) == {"event_id": "e", "attempt": "0"}
    assert _jsonb('["a"]', None) == ["a"]
    assert _jsonb(None, None) is None
