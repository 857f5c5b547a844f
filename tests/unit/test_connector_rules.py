"""The connector rules of issue 11: retry classes, registered types, connectors without a schema."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from adapters.connectors.base_connector import BaseConnector
from consumer.push_service import PushService
from domain.config_schema import (
    MASK,
    ConfigField,
    ConfigSchema,
    ConfigValidationError,
    ErrorCode,
    FieldError,
    config_errors,
    masked_config,
)
from domain.errors import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorRejectedError,
    ConnectorSecurityError,
    ConnectorTransientError,
)
from domain.model import DraftOrder, check_connector_type
from domain.ports import ERPConnectorPort, ExportResult, TestResult
from domain.records import ConnectionRecord
from domain.redaction import RedactedConfig, undeclared_secret_values
from producer.connection_admin import ConnectionAdmin, config_view
from tests.fakes import FakeCipher, FakeClock, FakeConnector, FakeRegistry, FakeUnitOfWork
from tests.push_log_fakes import FakePushLogWriter

SECRET = "undeclared-Secret-9f2c"

# -- retry classes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_class", "retryable"),
    [
        (ConnectorError, True),
        (ConnectorTransientError, True),
        (ConnectorConfigError, False),
        (ConnectorRejectedError, False),
        (ConnectorSecurityError, False),
    ],
)
def test_each_class_says_whether_it_is_retried(
    error_class: type[ConnectorError], retryable: bool
) -> None:
    assert error_class("x").retryable is retryable
    assert error_class.retryable is retryable


def test_config_validation_errors_are_permanent() -> None:
    error = ConfigValidationError([FieldError("host", ErrorCode.REQUIRED, "is required")])
    assert error.retryable is False


@pytest.mark.parametrize(
    "error_class",
    [ConnectorError, ConnectorTransientError, ConnectorConfigError, ConnectorRejectedError],
)
@pytest.mark.parametrize("retryable", [True, False])
def test_any_error_may_say_otherwise_for_itself(
    error_class: type[ConnectorError], retryable: bool
) -> None:
    default = error_class.retryable
    error = error_class("x", stage="export", retryable=retryable)
    assert error.retryable is retryable
    assert error.stage == "export"
    assert error_class.retryable is default  # the class keeps its rule
    assert error_class("y").retryable is default
    assert copy.copy(error).retryable is retryable  # kept by sanitised_error's copy


# -- registered types ----------------------------------------------------------------------

REGISTERED = frozenset({"MOCK", "MY_ERP"})


def test_a_registered_type_is_returned() -> None:
    assert check_connector_type("MY_ERP", REGISTERED) == "MY_ERP"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("SAP", "SAP"),
        ("mock", "mock"),
        ("My Erp", "My Erp"),
        ("", ""),
        ("A\nB\x1b[31m", "A\\nB\\x1b[31m"),
        (42, "42"),
        (None, "None"),
        (["MOCK"], "['MOCK']"),
        ("X" * 200, "X" * 79 + "\u2026"),
    ],
)
def test_every_rejected_value_gets_the_seed_message_in_one_format(
    value: object, shown: str
) -> None:
    with pytest.raises(ValueError) as excinfo:
        check_connector_type(value, REGISTERED)
    assert str(excinfo.value) == f"Invalid connector_type: {shown}"


def test_the_fake_store_refuses_an_unregistered_type_like_the_sql_store() -> None:
    uow = FakeUnitOfWork()
    with uow, pytest.raises(ValueError, match=r"^Invalid connector_type: SAP$"):
        uow.connections.add(ConnectionRecord.new(uuid.uuid4(), "SAP", b"blob"))


# -- connectors without a schema -----------------------------------------------------------


class Schemaless(BaseConnector):
    """Declares no config_schema, like the seed's MyConnector."""

    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        return ExportResult(success=True, export_id=draft_order.id)

    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        return self.build_test_result(True)


def test_the_port_and_the_base_connector_allow_no_schema() -> None:
    assert ERPConnectorPort.config_schema is None
    assert Schemaless.config_schema is None
    assert Schemaless().config_errors({"anything": {"goes": [1, 2]}}) == []


@pytest.mark.parametrize("config", [None, [], "text", 3])
def test_without_a_schema_a_non_object_is_still_refused(config: object) -> None:
    assert config_errors(None, config) == [
        FieldError("$", ErrorCode.NOT_AN_OBJECT, "config must be a JSON object")
    ]
    with pytest.raises(ConfigValidationError, match="config must be a JSON object"):
        Schemaless().validate_config(config)


def test_without_a_schema_every_value_is_masked_and_scrubbed() -> None:
    config = {"url": "https://erp.example.com", "key": SECRET, "deep": {"token": [SECRET + "2"]}}
    connector = Schemaless()
    prepared = connector.prepare_config(config)
    assert dict(prepared) == config
    assert prepared.masked() == dict.fromkeys(config, MASK)
    assert masked_config(None, config) == dict.fromkeys(config, MASK)
    message = connector.safe_message(f"{SECRET} / {SECRET}2 at https://erp.example.com", config)
    assert message == "*** / *** at ***"


def test_short_undeclared_values_are_masked_but_not_scrubbed_from_messages() -> None:
    config = {"flag": True, "n": 1, "cur": "EUR", "port": 8443, "none": None}
    assert sorted(undeclared_secret_values(config)) == ["8443"]
    assert masked_config(None, config) == dict.fromkeys(config, MASK)


def test_a_schema_still_masks_only_its_secret_fields() -> None:
    schema = ConfigSchema(fields=(ConfigField("host"), ConfigField("password", secret=True)))
    assert masked_config(schema, {"host": "h", "password": SECRET}) == {
        "host": "h",
        "password": MASK,
    }


class EchoingSchemaless(ERPConnectorPort):
    """A port implementation with no schema whose ERP echoes the whole config."""

    def __init__(self) -> None:
        self.seen: list[Mapping[str, Any]] = []

    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        self.seen.append(config)
        raise ConnectorRejectedError(f"refused: {dict(config)}")

    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        return TestResult(success=True)


def test_the_push_path_treats_every_value_of_a_schemaless_config_as_secret() -> None:
    org = uuid.uuid4()
    config = {"endpoint": "https://erp.example.com/api", "company": "ACME-42", "key": SECRET}
    uow = FakeUnitOfWork(known_types=frozenset({"ECHO"}))
    cipher = FakeCipher()
    with uow:
        blob = cipher.encrypt_config(config, org_id=org, connector_type="ECHO")
        uow.connections.add(ConnectionRecord.new(org, "ECHO", blob))
        uow.commit()
    connector = EchoingSchemaless()
    clock = FakeClock()
    push = PushService(
        uow=uow,
        writer=FakePushLogWriter(uow),
        registry=FakeRegistry({"ECHO": connector}),
        cipher=cipher,
        sleep=clock.sleep,
        clock=clock,
        monotonic=clock.monotonic,
    )
    order = DraftOrder(id=uuid.uuid4(), org_id=org, order_number="SO-1", customer_code="C")
    result = push.push_order(org, order)
    assert result.status == "FAILED"
    message = result.error_message or ""
    for value in config.values():
        assert value not in message
    assert message.count(MASK) == 3
    [seen] = connector.seen
    assert isinstance(seen, RedactedConfig)
    assert seen.secret_keys == frozenset(config)
    assert SECRET not in repr(seen)


# -- what the CLI shows of a config ---------------------------------------------------------


def test_config_view_masks_by_schema_or_everything_with_a_note() -> None:
    config = {"password": SECRET, "host": "h"}
    assert config_view("MOCK", FakeConnector(), config) == {
        "config": {"password": MASK, "host": "h"}
    }
    assert config_view("MY_ERP", Schemaless(), config) == {
        "config": {"password": MASK, "host": MASK},
        "config_note": "MY_ERP declares no config_schema: every value is masked",
    }
    unknown = config_view("SAP", None, config)
    assert unknown["config"] == {"password": MASK, "host": MASK}
    assert "no connector is registered for SAP" in unknown["config_note"]


class BrokenCipher:
    def encrypt_config(
        self, config: Mapping[str, Any], /, *, org_id: Any, connector_type: str
    ) -> bytes:
        raise AssertionError("listing encrypts nothing")

    def decrypt_config(
        self, blob: bytes, /, *, org_id: Any, connector_type: str
    ) -> Mapping[str, Any]:
        if blob == b"bad":
            raise ValueError("authentication tag verification failed")
        return {"password": SECRET, "host": "h"}


def test_listing_goes_on_past_a_config_it_cannot_decrypt() -> None:
    good = ConnectionRecord.new(uuid.uuid4(), "MOCK", b"good")
    bad = ConnectionRecord.new(uuid.uuid4(), "MOCK", b"bad")
    gone = ConnectionRecord.new(uuid.uuid4(), "SAP", b"good")
    registry = FakeRegistry({"MOCK": FakeConnector()})
    uow = FakeUnitOfWork()
    for record in (good, bad, gone):
        uow.db.connections[record.id] = record  # as an old database may hold them

    def no_key() -> BrokenCipher:
        raise LookupError("no key")

    views = ConnectionAdmin(uow, registry, BrokenCipher).list()
    assert [v["id"] for v in views] == [str(good.id), str(bad.id), str(gone.id)]
    assert views[0]["config"] == {"password": MASK, "host": "h"}
    assert views[1]["config"] is None
    assert views[1]["config_note"] == (
        "config not shown: cannot decrypt it (ValueError: authentication tag verification failed)"
    )
    assert views[2]["config"] == {"password": MASK, "host": MASK}
    assert SECRET not in repr(views)
    without_key = ConnectionAdmin(uow, registry, no_key, cipher_errors=(LookupError,)).list(
        good.org_id
    )
    assert without_key[0]["config"] is None
    assert without_key[0]["config_note"] == "config not shown: no key"
