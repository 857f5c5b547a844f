"""Property-based checks that complement the example tests of each module.

* encryption: ANY blob (generated config, organisation, connector type, key, bound or
  unbound) fails with the documented ``EncryptionError`` after any single bit flip, any
  truncation or any appended byte - not only the one fixed blob of test_encryption.py;
  a bound blob opens only in its own context, an unbound one in every context;
* Avro: generated ``PushResult`` records (unicode, long error messages, big
  numbers as the schema allows) survive the round trip, error messages cut to the
  schema's bound.

Idempotency keys and the retry delays are covered in test_idempotency_and_retry.py,
the worker's retry chain (tiers, cap) in test_push_handler.py, and generated orders
through Avro in test_avro_codec.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.avro import (
    decode_push_requested,
    decode_push_result,
    encode_push_requested,
    encode_push_result,
    push_result_record,
)
from adapters.avro.codec import bound_text
from adapters.crypto.encryption import ConfigCipher, EncryptionError
from adapters.crypto.keys import MasterKeyring
from domain.model import DraftOrder
from tests.unit.test_avro_codec import request_for

TAG_FAILED = "authentication tag verification failed"
#: The schema's bound on PushResult.error_message (characters).
ERROR_MESSAGE_BOUND = 2000

keys = st.binary(min_size=32, max_size=32)
# The snowman prefix cannot occur in an error message, so "not in the message" is meaningful.
secrets = st.text(min_size=1, max_size=40).map(lambda s: "\u2603pw:" + s)
configs = st.fixed_dictionaries(
    {"password": secrets},
    optional={
        "host": st.text(max_size=30),
        "port": st.integers(1, 65535),
        "notes": st.text(max_size=200),
        "nested": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    },
)
connector_types = st.sampled_from(["DROPZONE_JSON_V1", "MOCK", "SAP", "X_" + "Y" * 62])
ALWAYS_BOUND = st.just(True)


@st.composite
def sealed(
    draw: st.DrawFn, bound: st.SearchStrategy[bool] = ALWAYS_BOUND
) -> tuple[ConfigCipher, bytes, dict[str, Any], uuid.UUID, str]:
    """A cipher, a blob, its config and the context it is stored in (bound to it or not)."""
    cipher = ConfigCipher(MasterKeyring(draw(keys)))
    config = draw(configs)
    org = draw(st.uuids())
    ctype = draw(connector_types)
    blob = (
        cipher.encrypt_config(config, org_id=org, connector_type=ctype)
        if draw(bound, label="bound")
        else cipher.encrypt_config(config)
    )
    return cipher, blob, config, org, ctype


def assert_refused(
    cipher: ConfigCipher, blob: bytes, org: uuid.UUID, ctype: str, secret: str
) -> None:
    with pytest.raises(EncryptionError) as excinfo:
        cipher.decrypt_config(blob, org_id=org, connector_type=ctype)
    message = str(excinfo.value)
    assert message.startswith(TAG_FAILED)
    assert secret not in message and secret not in repr(excinfo.value)


@settings(max_examples=150)
@given(case=sealed(st.booleans()), data=st.data())
def test_any_bit_flip_in_any_blob_fails_with_the_documented_error(
    case: tuple[ConfigCipher, bytes, dict[str, Any], uuid.UUID, str], data: st.DataObject
) -> None:
    cipher, blob, config, org, ctype = case
    assert cipher.decrypt_config(blob, org_id=org, connector_type=ctype) == config
    position = data.draw(st.integers(0, len(blob) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    flipped = bytearray(blob)
    flipped[position] ^= 1 << bit
    assert_refused(cipher, bytes(flipped), org, ctype, config["password"])


@settings(max_examples=60)
@given(case=sealed(st.booleans()), data=st.data())
def test_any_truncation_or_extension_fails(
    case: tuple[ConfigCipher, bytes, dict[str, Any], uuid.UUID, str], data: st.DataObject
) -> None:
    cipher, blob, config, org, ctype = case
    cut = data.draw(st.integers(0, len(blob) - 1), label="length")
    assert_refused(cipher, blob[:cut], org, ctype, config["password"])
    tail = data.draw(st.binary(min_size=1, max_size=16), label="tail")
    assert_refused(cipher, blob + tail, org, ctype, config["password"])


@settings(max_examples=60)
@given(case=sealed(), other_org=st.uuids(), other_type=connector_types)
def test_blob_opens_only_in_its_own_context(
    case: tuple[ConfigCipher, bytes, dict[str, Any], uuid.UUID, str],
    other_org: uuid.UUID,
    other_type: str,
) -> None:
    cipher, blob, config, org, ctype = case
    if (other_org, other_type) != (org, ctype):
        assert_refused(cipher, blob, other_org, other_type, config["password"])


@settings(max_examples=60)
@given(case=sealed(st.just(False)), other_org=st.uuids(), other_type=connector_types)
def test_unbound_blob_opens_in_every_context(
    case: tuple[ConfigCipher, bytes, dict[str, Any], uuid.UUID, str],
    other_org: uuid.UUID,
    other_type: str,
) -> None:
    cipher, blob, config, _org, _ctype = case
    assert cipher.decrypt_config(blob, org_id=other_org, connector_type=other_type) == config
    assert cipher.decrypt_config(blob) == config


# --- Avro: PushResult -----------------------------------------------------------------------

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
optional_texts = st.none() | texts
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)


result_fields = st.fixed_dictionaries(
    {
        "latency_ms": st.none() | st.integers(0, 2**31 - 1),
        "connector_type": optional_texts,
        "storage_key": optional_texts,
        "erp_reference": optional_texts,
        "error_class": optional_texts,
        "error_message": st.none() | st.text(alphabet=st.characters(codec="utf-8"), max_size=3000),
    }
)


@settings(max_examples=100)
@given(
    status=st.sampled_from(["SUCCESS", "FAILED"]),
    attempt=st.integers(0, 2**31 - 1),
    fields=result_fields,
    completed=timestamps,
)
def test_any_push_result_survives_the_round_trip(
    status: str, attempt: int, fields: dict[str, Any], completed: datetime
) -> None:
    order = DraftOrder(id=uuid.uuid4(), org_id=uuid.uuid4(), order_number="SO", customer_code="C")
    request = decode_push_requested(encode_push_requested(request_for(order, attempt)))
    result = push_result_record(
        request, event_id=uuid.uuid4(), status=status, completed_at=completed, **fields
    )
    decoded = decode_push_result(encode_push_result(result))
    message = fields["error_message"]
    bounded = None if message is None else bound_text(message, ERROR_MESSAGE_BOUND)
    assert decoded == {**result, "error_message": bounded, "schema_version": 1}
