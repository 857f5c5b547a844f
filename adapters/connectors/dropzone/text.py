"""Limits and text rules shared by the dropzone's paths, document and config."""

from __future__ import annotations

import re
import unicodedata

CONNECTOR_TYPE = "DROPZONE_JSON_V1"
#: The ``format`` value of every exported document.
DOCUMENT_FORMAT = "orderflow.dropzone.order"
#: Bumped on any incompatible change of the document layout.
FORMAT_VERSION = 1
#: Largest encoded document we upload (5 MiB); bigger orders are rejected permanently.
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
#: Longest accepted ``remote_dir``.
MAX_REMOTE_DIR_CHARS = 1024
# Decimals beyond 10**±1000 are refused: their plain-notation string would be huge.
MAX_DECIMAL_EXPONENT = 1000

#: Lone surrogates cannot be encoded as UTF-8.
SURROGATE = re.compile("[\ud800-\udfff]")
#: What a host name or address may look like (brackets for IPv6 literals).
HOST_PATTERN = re.compile(r"^\[?[A-Za-z0-9._:%][A-Za-z0-9._:%-]*\]?$")


class DocumentError(ValueError):
    """A draft order cannot be encoded as a dropzone document (permanent)."""


def has_control_characters(text: str) -> bool:
    """Tell whether ``text`` holds a control character (category Cc)."""
    return any(unicodedata.category(char) == "Cc" for char in text)
