"""Avro adapter: the pipeline's event codec (single-object encoding) and record helpers.

``codec`` frames and (de)serialises records with the schemas of ``schemas/``;
``records`` converts between domain values and those records;
``compatibility`` checks schema evolution.
"""

from adapters.avro.codec import (
    HEADER_SIZE,
    MAGIC,
    PUSH_REQUESTED,
    PUSH_RESULT,
    AvroCodec,
    AvroCodecError,
    Decoded,
    InvalidMessage,
    InvalidRecord,
    SchemaVersion,
    UndecodableMessage,
    UnknownSchema,
    decode,
    decode_push_requested,
    decode_push_result,
    default_codec,
    encode,
    encode_push_requested,
    encode_push_result,
)
from adapters.avro.compatibility import compatibility_errors, full_compatibility_errors
from adapters.avro.records import (
    decimal_from_text,
    decimal_to_text,
    draft_order_from_push_requested,
    encode_outbox_event,
    jsonable,
    order_from_avro,
    order_to_avro,
    push_requested_from_outbox,
    push_requested_record,
    push_result_record,
)

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "PUSH_REQUESTED",
    "PUSH_RESULT",
    "AvroCodec",
    "AvroCodecError",
    "Decoded",
    "InvalidMessage",
    "InvalidRecord",
    "SchemaVersion",
    "UndecodableMessage",
    "UnknownSchema",
    "compatibility_errors",
    "decimal_from_text",
    "decimal_to_text",
    "decode",
    "decode_push_requested",
    "decode_push_result",
    "default_codec",
    "draft_order_from_push_requested",
    "encode",
    "encode_outbox_event",
    "encode_push_requested",
    "encode_push_result",
    "full_compatibility_errors",
    "jsonable",
    "order_from_avro",
    "order_to_avro",
    "push_requested_from_outbox",
    "push_requested_record",
    "push_result_record",
]
