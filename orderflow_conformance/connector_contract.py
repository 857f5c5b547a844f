"""The ERP connector contract: what every ``ERPConnectorPort`` implementation must do.

One reusable pytest suite, run for every connector (built-in, Tryton, third-party).
To run it for a connector, subclass :class:`ConnectorContract` in a test module whose
class name starts with ``Test``, set :attr:`~ConnectorContract.secret_field_names` and
provide the fixtures below. A connector installed through an entry point in the
``orderflow.connectors`` group only needs its type name; the suite loads it from there::

    import pytest

    from orderflow_conformance import ConnectorContract


    class TestMyErpContract(ConnectorContract):
        connector_type = "MY_ERP"                 # found through the entry point
        secret_field_names = frozenset({"api_key"})

        @pytest.fixture
        def valid_config(self):                   # test_connection and export succeed
            return {"api_url": ..., "api_key": "real-key-..."}

        @pytest.fixture
        def invalid_config(self):                 # fails validation (bad/missing fields)
            return {"api_url": "", "api_key": "some-secret-value"}

        @pytest.fixture
        def wrong_credentials_config(self):       # well-formed, refused at login
            return {"api_url": ..., "api_key": "wrong-key-..."}

        @pytest.fixture
        def count_documents(self, erp_client):    # look at the ERP itself, not the connector
            return lambda draft_order: erp_client.count_orders(reference=str(draft_order.id))

Fixtures a subclass must provide:

``connector``
    A fresh connector instance per test (a generator fixture may clean up after it).
    Defaults to the class of the entry point named :attr:`ConnectorContract.connector_type`
    (instantiated without arguments, closed afterwards if it has ``close``).
``valid_config``
    A config with which ``test_connection`` succeeds and ``export`` creates documents.
``invalid_config``
    A config that fails validation. Put a secret value into it (in a secret field) so
    the leak check also covers the validation path.
``wrong_credentials_config``
    A well-formed config the ERP refuses at authentication.
``count_documents``
    A callable ``count_documents(draft_order) -> int``: how many ERP documents exist for
    that draft order, observed independently of the connector under test (an ERP API
    query, an SFTP listing, the mock's store). Leftover temporary files count.

Fixtures with defaults a subclass may override:

``draft_order`` / ``other_draft_order``
    Fresh draft orders with new ids for every test (override if the ERP needs known
    customers or products).
``secret_values``
    Every string that must never be shown. By default the values of the secret fields
    of the three configs, plus each long line of a multi-line secret (a PEM key). Each
    must be at least :data:`MIN_SECRET_CHARS` characters, so that finding one in a text
    cannot be a coincidence.

Errors, and what the pipeline does with them: a ``ConnectorTransientError``, a plain
``ConnectorError`` and any other exception ``export`` lets escape are *retried* (with
backoff); ``ConnectorConfigError``, ``ConnectorRejectedError`` and
``ConnectorSecurityError`` are *permanent*, and any error may say
``retryable=False``. So the suite checks that an invalid or malformed config raises a
``ConnectorConfigError`` and wrong credentials a permanent error: a plain
``ConnectorError`` there would be retried to no avail.

A connector may declare no ``config_schema`` (``None``): every value of its config is
then a secret, and the schema checks below only check that it is ``None``.

Class attributes:

``connector_type``
    Name of the connector's entry point in ``orderflow.connectors``; used by the default
    ``connector`` fixture, and checked against the class's own ``connector_type``.
``secret_field_names`` (required)
    Config fields that hold secrets; the connector's ``config_schema`` must mark at least
    these as secret.
``config_stage`` (default ``"config"``)
    ``TestResult.stage`` expected for an invalid config.
``auth_stages`` (default ``{"auth"}``)
    Acceptable ``TestResult.stage`` values for wrong credentials.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from importlib.metadata import entry_points
from typing import Any, ClassVar

import pytest

from adapters.connectors.registry import ENTRY_POINT_GROUP
from domain.config_schema import (
    ConfigSchema,
    ConfigValidationError,
    ErrorCode,
    FieldType,
    config_errors,
)
from domain.model import DraftOrder, OrderLine
from domain.ports import (
    ConnectorConfigError,
    ConnectorError,
    ERPConnectorPort,
    ExportResult,
    TestResult,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MIN_SECRET_CHARS",
    "ConnectorContract",
    "assert_no_secret",
    "load_connector_class",
    "make_draft_order",
]

#: Shortest secret value the leak check accepts (shorter ones match by coincidence).
MIN_SECRET_CHARS = 8

_CONNECTOR_TYPE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_MALFORMED_CONFIGS: tuple[Any, ...] = (None, [], "not a config", 42)


def make_draft_order(number: str = "SO-CONTRACT-1") -> DraftOrder:
    """A small valid draft order with fresh ids."""
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=uuid.uuid4(),
        order_number=number,
        customer_code="CUST-CONTRACT",
        currency="EUR",
        notes="contract test",
        lines=(
            OrderLine(1, "P-100", Decimal("3"), Decimal("2.50"), "Screws", "pcs"),
            OrderLine(2, "P-200", Decimal("1.25"), Decimal("10.00"), "Cable", "m"),
        ),
    )


def load_connector_class(connector_type: str) -> type[ERPConnectorPort]:
    """Return the connector class installed under ``connector_type`` in the entry points."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == connector_type]
    if not found:
        pytest.fail(
            f"no entry point {connector_type!r} in group {ENTRY_POINT_GROUP!r}: "
            "is the connector's package installed?",
            pytrace=False,
        )
    loaded = found[0].load()
    if not (isinstance(loaded, type) and issubclass(loaded, ERPConnectorPort)):
        pytest.fail(
            f"entry point {connector_type!r} does not name an ERPConnectorPort class", pytrace=False
        )
    return loaded


def _texts_of(obj: object) -> Iterable[str]:
    """Every text an object shows: str and repr, and for exceptions args, attributes, chain."""
    stack: list[object] = [obj]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield str(item)
        yield repr(item)
        if isinstance(item, BaseException):
            yield repr(item.args)
            yield repr(vars(item))
            stack += [item.__cause__, item.__context__]


def assert_no_secret(secrets: Iterable[str], *objects: object, where: str = "") -> None:
    """Fail if any of ``secrets`` occurs in what any of ``objects`` shows when printed."""
    secrets = list(secrets)
    for obj in objects:
        for text in _texts_of(obj):
            for index, secret in enumerate(secrets):
                assert secret not in text, f"secret #{index} leaked via {type(obj).__name__}" + (
                    f" ({where})" if where else ""
                )


def _log_texts(records: Iterable[logging.LogRecord]) -> Iterable[tuple[str, str]]:
    formatter = logging.Formatter()
    for record in records:
        where = f"log record of {record.name!r}"
        yield where, record.getMessage()
        yield where, repr(record.args)
        if record.exc_info:
            yield where, formatter.formatException(record.exc_info)
        if record.exc_text:
            yield where, record.exc_text
        if record.stack_info:
            yield where, record.stack_info


class ConnectorContract:
    """Contract tests every ERP connector must pass (subclass it as ``Test...``)."""

    #: Entry-point name of the connector (for the default ``connector`` fixture).
    connector_type: ClassVar[str | None] = None
    #: Config fields holding secrets; ``config_schema`` must mark (at least) these.
    secret_field_names: ClassVar[frozenset[str]]
    #: ``TestResult.stage`` of an invalid config.
    config_stage: ClassVar[str] = "config"
    #: Acceptable ``TestResult.stage`` values for wrong credentials.
    auth_stages: ClassVar[frozenset[str]] = frozenset({"auth"})

    # -- fixtures a subclass provides -----------------------------------------------------

    @pytest.fixture
    def connector(self) -> Iterator[ERPConnectorPort]:
        if self.connector_type is None:
            raise NotImplementedError(
                f"{type(self).__name__} must set connector_type or provide 'connector'"
            )
        instance = load_connector_class(self.connector_type)()
        try:
            yield instance
        finally:
            close = getattr(instance, "close", None)
            if callable(close):
                close()

    @pytest.fixture
    def valid_config(self) -> Mapping[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must provide 'valid_config'")

    @pytest.fixture
    def invalid_config(self) -> Mapping[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must provide 'invalid_config'")

    @pytest.fixture
    def wrong_credentials_config(self) -> Mapping[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must provide 'wrong_credentials_config'")

    @pytest.fixture
    def count_documents(self) -> Callable[[DraftOrder], int]:
        raise NotImplementedError(f"{type(self).__name__} must provide 'count_documents'")

    # -- fixtures with defaults -----------------------------------------------------------

    @pytest.fixture
    def draft_order(self) -> DraftOrder:
        return make_draft_order("SO-CONTRACT-1")

    @pytest.fixture
    def other_draft_order(self) -> DraftOrder:
        return make_draft_order("SO-CONTRACT-2")

    @pytest.fixture
    def secret_values(
        self,
        connector: ERPConnectorPort,
        valid_config: Mapping[str, Any],
        invalid_config: Mapping[str, Any],
        wrong_credentials_config: Mapping[str, Any],
    ) -> list[str]:
        return self.default_secret_values(
            connector, valid_config, invalid_config, wrong_credentials_config
        )

    def default_secret_values(
        self, connector: ERPConnectorPort, *configs: Mapping[str, Any]
    ) -> list[str]:
        """Secret field values of ``configs``, plus the long lines of multi-line ones."""
        schema = connector.config_schema
        names = set(self._expected_secret_fields())
        if schema is not None:
            names |= schema.secret_names
        values: list[str] = []
        for config in configs:
            # Without a schema every value is a secret.
            for name in sorted(names if schema is not None else names | set(config)):
                value = config.get(name)
                if not isinstance(value, str) or not value:
                    continue
                values.append(value)
                values += [
                    line.strip()
                    for line in value.splitlines()
                    if len(line.strip()) > 20 and not line.strip().startswith("-----")
                ]
        return sorted(set(values))

    # -- helpers --------------------------------------------------------------------------

    def _expected_secret_fields(self) -> frozenset[str]:
        names = getattr(type(self), "secret_field_names", None)
        if names is None:
            pytest.fail(f"{type(self).__name__} must set secret_field_names", pytrace=False)
        return frozenset(names)

    @staticmethod
    def _export_error(
        connector: ERPConnectorPort, draft_order: DraftOrder, config: Any
    ) -> ConnectorError:
        with pytest.raises(ConnectorError) as excinfo:
            connector.export(draft_order, config)
        return excinfo.value

    @staticmethod
    def _assert_failed_result(result: object) -> TestResult:
        assert isinstance(result, TestResult), f"test_connection returned {type(result)!r}"
        assert result.success is False
        assert isinstance(result.stage, str)
        assert result.stage
        assert isinstance(result.error_message, str)
        assert result.error_message
        assert result.latency_ms >= 0
        return result

    # -- identity and schema --------------------------------------------------------------

    def test_connector_type_is_an_uppercase_name(self, connector: ERPConnectorPort) -> None:
        connector_type = type(connector).connector_type
        assert isinstance(connector_type, str)
        assert _CONNECTOR_TYPE.match(connector_type), connector_type
        assert connector.connector_type == connector_type
        if self.connector_type is not None:
            assert connector_type == self.connector_type, "entry point name != connector_type"

    def test_config_schema_is_well_formed(self, connector: ERPConnectorPort) -> None:
        schema = connector.config_schema
        assert schema is None or isinstance(schema, ConfigSchema), type(schema)
        if schema is None:  # no schema: every value is secret; nothing more to check
            return
        assert schema.fields, "a connector declares its config fields"
        for declared in schema.fields:
            assert isinstance(declared.name, str)
            assert declared.name
            assert isinstance(declared.type, FieldType)
            assert declared.description, f"field {declared.name!r} has no description"
            if declared.default is not None:
                assert declared.check(declared.default) == [], (
                    f"the default of {declared.name!r} fails its own field's checks"
                )
            if declared.secret:
                assert declared.default is None, f"secret {declared.name!r} has a default"

    def test_config_schema_marks_the_secret_fields(self, connector: ERPConnectorPort) -> None:
        schema = connector.config_schema
        expected = self._expected_secret_fields()
        assert expected, "a connector with credentials has at least one secret field"
        assert schema is None or isinstance(schema, ConfigSchema), type(schema)
        if schema is None:  # every value of an undeclared config is treated as secret
            return
        missing = sorted(expected - schema.secret_names)
        assert not missing, f"config_schema does not mark {missing} as secret"
        described = {entry["name"]: entry for entry in schema.describe()}
        json.dumps(list(described.values()))
        for name in expected:
            assert described[name]["secret"] is True

    def test_config_schema_accepts_the_valid_config(
        self, connector: ERPConnectorPort, valid_config: Mapping[str, Any]
    ) -> None:
        assert config_errors(connector.config_schema, valid_config) == []

    # -- test_connection ------------------------------------------------------------------

    def test_connection_succeeds_with_the_valid_config(
        self,
        connector: ERPConnectorPort,
        valid_config: Mapping[str, Any],
        draft_order: DraftOrder,
        count_documents: Callable[[DraftOrder], int],
    ) -> None:
        result = connector.test_connection(valid_config)
        assert isinstance(result, TestResult)
        assert result.success is True, result.error_message
        assert result.stage is None
        assert result.error_message is None
        assert result.latency_ms >= 0
        assert count_documents(draft_order) == 0, "test_connection must not export"

    def test_connection_with_wrong_credentials_fails_without_raising(
        self, connector: ERPConnectorPort, wrong_credentials_config: Mapping[str, Any]
    ) -> None:
        result = self._assert_failed_result(connector.test_connection(wrong_credentials_config))
        assert result.stage in self.auth_stages

    def test_connection_with_an_invalid_config_fails_at_the_config_stage(
        self, connector: ERPConnectorPort, invalid_config: Mapping[str, Any]
    ) -> None:
        result = self._assert_failed_result(connector.test_connection(invalid_config))
        assert result.stage == self.config_stage

    @pytest.mark.parametrize("malformed", _MALFORMED_CONFIGS, ids=repr)
    def test_connection_never_raises_on_a_malformed_config(
        self, connector: ERPConnectorPort, malformed: Any
    ) -> None:
        result = self._assert_failed_result(connector.test_connection(malformed))
        assert result.stage == self.config_stage

    # -- export ---------------------------------------------------------------------------

    def test_export_creates_one_document(
        self,
        connector: ERPConnectorPort,
        valid_config: Mapping[str, Any],
        draft_order: DraftOrder,
        count_documents: Callable[[DraftOrder], int],
    ) -> None:
        assert count_documents(draft_order) == 0
        result = connector.export(draft_order, valid_config)
        assert isinstance(result, ExportResult)
        assert result.success is True
        assert result.export_id == draft_order.id
        assert result.error_message is None
        assert isinstance(result.connector_metadata, Mapping)
        assert count_documents(draft_order) == 1

    def test_exporting_the_same_order_twice_creates_one_document(
        self,
        connector: ERPConnectorPort,
        valid_config: Mapping[str, Any],
        draft_order: DraftOrder,
        count_documents: Callable[[DraftOrder], int],
    ) -> None:
        first = connector.export(draft_order, valid_config)
        second = connector.export(draft_order, valid_config)
        assert first.success is True
        assert second.success is True
        assert first.export_id == second.export_id == draft_order.id
        assert first.storage_key == second.storage_key
        assert count_documents(draft_order) == 1

    def test_a_fresh_connector_instance_does_not_duplicate_either(
        self,
        connector: ERPConnectorPort,
        valid_config: Mapping[str, Any],
        draft_order: DraftOrder,
        count_documents: Callable[[DraftOrder], int],
    ) -> None:
        """Idempotency must survive a restart: it cannot live only in the instance.

        The second instance is built without arguments, as ``ConnectorRegistry`` does.
        """
        connector.export(draft_order, valid_config)
        again = type(connector)()
        try:
            assert again.export(draft_order, valid_config).success is True
        finally:
            close = getattr(again, "close", None)
            if callable(close):
                close()
        if count_documents(draft_order) != 1:
            pytest.fail("a new connector instance exported the same draft order again")

    def test_different_orders_get_different_documents(
        self,
        connector: ERPConnectorPort,
        valid_config: Mapping[str, Any],
        draft_order: DraftOrder,
        other_draft_order: DraftOrder,
        count_documents: Callable[[DraftOrder], int],
    ) -> None:
        first = connector.export(draft_order, valid_config)
        second = connector.export(other_draft_order, valid_config)
        assert first.storage_key != second.storage_key or first.storage_key is None
        assert count_documents(draft_order) == 1
        assert count_documents(other_draft_order) == 1

    def test_export_with_an_invalid_config_is_a_config_error_with_field_errors(
        self,
        connector: ERPConnectorPort,
        invalid_config: Mapping[str, Any],
        draft_order: DraftOrder,
        count_documents: Callable[[DraftOrder], int],
    ) -> None:
        error = self._export_error(connector, draft_order, invalid_config)
        assert isinstance(error, ConnectorConfigError), (
            f"{type(error).__name__} for an invalid config: raise ConnectorConfigError "
            "(a plain ConnectorError is retried)"
        )
        assert isinstance(error, ConfigValidationError), type(error)
        assert error.retryable is False
        assert error.errors, "a ConfigValidationError lists its field errors"
        for field_error in error.errors:
            assert isinstance(field_error.path, str)
            assert field_error.path
            assert isinstance(field_error.code, ErrorCode)
            assert field_error.message
        assert count_documents(draft_order) == 0

    @pytest.mark.parametrize("malformed", [None, [], "not a config"], ids=repr)
    def test_export_with_a_malformed_config_is_a_config_error(
        self, connector: ERPConnectorPort, draft_order: DraftOrder, malformed: Any
    ) -> None:
        error = self._export_error(connector, draft_order, malformed)
        assert isinstance(error, ConnectorConfigError), (
            f"{type(error).__name__} for a malformed config: raise ConnectorConfigError "
            "(a plain ConnectorError is retried)"
        )
        assert error.retryable is False

    def test_export_with_wrong_credentials_fails_permanently(
        self,
        connector: ERPConnectorPort,
        wrong_credentials_config: Mapping[str, Any],
        draft_order: DraftOrder,
        count_documents: Callable[[DraftOrder], int],
    ) -> None:
        error = self._export_error(connector, draft_order, wrong_credentials_config)
        assert error.retryable is False, (
            f"{type(error).__name__} is retried, and retrying with the same credentials "
            "cannot help: raise ConnectorConfigError (a plain ConnectorError is retried)"
        )
        assert str(error)
        assert count_documents(draft_order) == 0

    # -- secrets --------------------------------------------------------------------------

    def test_secrets_appear_in_no_error_result_repr_or_log(
        self,
        connector: ERPConnectorPort,
        valid_config: Mapping[str, Any],
        invalid_config: Mapping[str, Any],
        wrong_credentials_config: Mapping[str, Any],
        draft_order: DraftOrder,
        secret_values: list[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        assert secret_values, "secret_values is empty: the configs hold no secret to check"
        short = [len(s) for s in secret_values if len(s) < MIN_SECRET_CHARS]
        assert not short, f"secret values must have >= {MIN_SECRET_CHARS} characters"

        caplog.set_level(logging.DEBUG)
        observed: list[tuple[str, object]] = [("connector", connector)]
        configs = {
            "valid": valid_config,
            "invalid": invalid_config,
            "wrong credentials": wrong_credentials_config,
        }
        for name, config in configs.items():
            observed.append((f"test_connection({name})", connector.test_connection(config)))
            try:
                observed.append((f"export({name})", connector.export(draft_order, config)))
            except Exception as exc:  # every failure is checked, whatever its class
                observed.append((f"export({name}) raised", exc))
        observed.append(("connector after use", connector))

        for where, obj in observed:
            assert_no_secret(secret_values, obj, where=where)
        for where, text in _log_texts(caplog.records):
            assert_no_secret(secret_values, text, where=where)

    def test_a_secret_that_matches_message_text_is_masked_without_crashing(
        self,
        connector: ERPConnectorPort,
        invalid_config: Mapping[str, Any],
        draft_order: DraftOrder,
    ) -> None:
        """A weak secret ("required") collides with error text; scrubbing must not break."""
        first = self._assert_failed_result(connector.test_connection(invalid_config))
        assert first.error_message is not None
        words = sorted(re.findall(r"[A-Za-z]{4,}", first.error_message), key=len)
        assert words, "the error message of an invalid config explains what is wrong"
        colliding = dict(invalid_config)
        for name in self._expected_secret_fields():
            colliding[name] = words[-1]
        result = self._assert_failed_result(connector.test_connection(colliding))
        assert result.stage == self.config_stage
        error = self._export_error(connector, draft_order, colliding)
        assert isinstance(error, ConnectorConfigError)
