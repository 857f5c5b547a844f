"""docs/events.md lists every DLQ ``error_class`` the worker can write, in the order it checks.

The classes are collected from the code (every subclass of what the handler
catches, every connector error class of the project, the push failures'
constants), so a new error class without a line in the docs fails here.
The precedence tests feed the handler records that are bad in two ways.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

import adapters
import domain
from adapters.avro.codec import AvroCodecError, InvalidRecord, encode_push_requested
from adapters.avro.records import push_requested_record
from adapters.kafka.consumer import ConsumedMessage
from adapters.kafka.errors import HeaderError
from consumer.push_attempt import (
    CONFIG_NOT_DECRYPTABLE,
    NO_ACTIVE_CONNECTION,
    UNKNOWN_CONNECTOR_TYPE,
)
from consumer.push_handler import DEFERRED, DeadLetter
from domain.errors import ConnectorError
from domain.events import EVENT_PUSH_DEAD_LETTERED
from domain.model import DraftOrder
from domain.records import ConnectionRecord
from tests.unit.test_bad_input_handler import order_with
from tests.unit.test_push_handler import Env

EVENTS_MD = Path(__file__).resolve().parents[2] / "docs" / "events.md"
#: ``consumer.push_handler``'s fallback for a FAILED outcome without a class.
PUSH_FAILED = "PushFailed"


def dead_letter_section() -> str:
    text = EVENTS_MD.read_text(encoding="utf-8")
    start = text.index("\n## Dead letters: `error_class`")
    return text[start : text.index("\n## ", start + 1)]


def documented_classes() -> set[str]:
    """The names in the first column of the section's table."""
    names: set[str] = set()
    for line in dead_letter_section().splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z]+)`", first))
    return names


def subclasses(base: type) -> set[type]:
    found: set[type] = set()
    for sub in base.__subclasses__():
        found |= {sub} | subclasses(sub)
    return found


def import_project() -> None:
    """Import every module of ``domain`` and ``adapters`` so their classes are known."""
    for package in (domain, adapters):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if ".migrations" not in info.name:
                importlib.import_module(info.name)


def writable_classes() -> set[str]:
    import_project()
    ours = ("domain.", "adapters.", "consumer.", "producer.", "orderflow_conformance")
    caught = subclasses(HeaderError) | (subclasses(AvroCodecError) - {InvalidRecord})
    connector = {ConnectorError} | subclasses(ConnectorError)
    classes = {cls.__name__ for cls in caught | connector if cls.__module__.startswith(ours)}
    return classes | {
        NO_ACTIVE_CONNECTION,
        CONFIG_NOT_DECRYPTABLE,
        UNKNOWN_CONNECTOR_TYPE,
        PUSH_FAILED,
    }


def test_every_error_class_the_worker_can_write_is_documented() -> None:
    missing = writable_classes() - documented_classes()
    assert not missing, f"docs/events.md does not list the DLQ error_class(es) {sorted(missing)}"


def test_the_collected_classes_are_the_known_ones() -> None:
    # Guards the collection itself: if it found nothing, the test above would pass vacuously.
    assert {
        "MissingHeaderError",
        "InvalidHeaderError",
        "UndecodableMessage",
        "InvalidMessage",
        "UnknownSchema",
        "ConnectorError",
        "ConnectorConfigError",
        "ConfigValidationError",
        "ConnectorTransientError",
        "ConnectorRejectedError",
        "ConnectorSecurityError",
        "TrytonUserError",
        "SessionExpiredError",
        "NoActiveConnection",
        "ConfigDecryptionError",
        "UnknownConnectorType",
    } <= writable_classes()
    assert "InvalidRecord" not in writable_classes()  # an encoding error: never consumed


def test_retry_tier_classes_are_documented_too() -> None:
    assert f"`{DEFERRED}`" in dead_letter_section()


# -- precedence ---------------------------------------------------------------------------


def message(
    env: Env,
    order: DraftOrder,
    *,
    value: bytes | None = None,
    drop: tuple[str, ...] = (),
    replace: dict[str, bytes] | None = None,
    attempt: int = 0,
) -> ConsumedMessage:
    """A request of ``order`` with its value and headers spoilt as asked."""
    good = env.request(order)
    if value is None:
        record = push_requested_record(
            order,
            event_id=uuid.uuid4(),
            idempotency_key="any",
            attempt=attempt,
            occurred_at=env.clock(),
            approved_at=env.clock(),
        )
        value = encode_push_requested(record)
    items = tuple(
        (key, (replace or {}).get(key, raw)) for key, raw in good.header_items if key not in drop
    )
    return ConsumedMessage(good.topic, 0, 9, good.key, value, dict(items), None, items)


def error_class(env: Env, msg: ConsumedMessage) -> str:
    result = env.handler.handle(msg)
    assert isinstance(result, DeadLetter), result
    return dict(result.headers)["error_class"].decode()


CORRUPT_BODY_OF_UNKNOWN_SCHEMA = b"\xc3\x01" + bytes(8) + b"\xff\xff\xff"


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        # header bytes before anything: not UTF-8 + another header missing
        ({"replace": {"org_id": b"\xff"}, "drop": ("event_id",)}, "InvalidHeaderError"),
        # missing header + undecodable value
        ({"drop": ("org_id",), "value": b"not avro at all"}, "MissingHeaderError"),
        # the first missing header in the documented order is named
        ({"drop": ("traceparent", "event_type")}, "MissingHeaderError"),
        # garbled header value + unknown schema
        (
            {"replace": {"event_id": b"x"}, "value": CORRUPT_BODY_OF_UNKNOWN_SCHEMA},
            "InvalidHeaderError",
        ),
        # unknown fingerprint before the body is read
        ({"value": CORRUPT_BODY_OF_UNKNOWN_SCHEMA}, "UnknownSchema"),
        # a frame too short
        ({"value": b"\xc3\x01\x00"}, "UndecodableMessage"),
    ],
)
def test_the_first_failed_check_names_the_dead_letter(spoil: dict[str, Any], expected: str) -> None:
    env = Env()
    order = order_with(uuid.uuid4())
    assert error_class(env, message(env, order, **spoil)) == expected


def test_the_first_missing_header_in_the_documented_order_is_the_reason() -> None:
    env = Env()
    result = env.handler.handle(
        message(env, order_with(uuid.uuid4()), drop=("traceparent", "event_type"))
    )
    assert isinstance(result, DeadLetter)
    assert "'event_type'" in result.reason


def test_invalid_content_wins_over_a_push_that_would_fail() -> None:
    env = Env()  # no connection: a push would end NoActiveConnection
    order = order_with(uuid.uuid4(), notes="a\x00b")
    assert error_class(env, message(env, order, attempt=-1)) == "InvalidMessage"
    assert env.log(order) == [] and env.outbox(order) == []


def push_dead_letter_class(env: Env, order: DraftOrder) -> str:
    assert env.handle(env.request(order)) == "FAILED"
    (letter,) = [e for e in env.outbox(order) if e.event_type == EVENT_PUSH_DEAD_LETTERED]
    return letter.headers["error_class"]


def test_push_failures_follow_the_documented_order() -> None:
    env = Env()
    org = uuid.uuid4()
    order = order_with(org)
    assert push_dead_letter_class(env, order) == NO_ACTIVE_CONNECTION

    # A connection of an unknown type whose blob does not decrypt: decryption comes first.
    bad = ConnectionRecord.new(org, "NOPE", b"not a blob", now=env.clock())
    env.db.connections[bad.id] = bad
    assert push_dead_letter_class(env, order_with(org)) == CONFIG_NOT_DECRYPTABLE

    # The same unknown type with a blob that decrypts: the type is what is wrong.
    env.db.connections.clear()
    env.connect(org)
    (record,) = env.db.connections.values()
    env.db.connections[record.id] = ConnectionRecord(
        id=record.id,
        org_id=org,
        connector_type="NOPE",
        config_encrypted=_blob_for(org, "NOPE"),
    )
    assert push_dead_letter_class(env, order_with(org)) == UNKNOWN_CONNECTOR_TYPE


def _blob_for(org: uuid.UUID, connector_type: str) -> bytes:
    from tests.fakes import FakeCipher

    return FakeCipher().encrypt_config({"host": "erp"}, org_id=org, connector_type=connector_type)
