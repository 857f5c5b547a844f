"""The pipeline's Avro schemas (``*.avsc``, namespace ``com.orderflow.erp.push.v1``).

They are a public contract: see ``docs/events.md``. :mod:`schemas.loader`
parses them, inlines shared types, fingerprints them and keeps their
published versions (``history/``).
"""

from schemas.loader import (
    NAMESPACE,
    SCHEMA_NAMES,
    TYPE_NAMES,
    SchemaError,
    load_schema,
    schema_fingerprint,
    schema_json,
    schema_path,
)

__all__ = [
    "NAMESPACE",
    "SCHEMA_NAMES",
    "TYPE_NAMES",
    "SchemaError",
    "load_schema",
    "schema_fingerprint",
    "schema_json",
    "schema_path",
]
