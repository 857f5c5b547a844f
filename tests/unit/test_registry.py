"""ConnectorRegistry: registration, the seed's error message and entry-point discovery.

Discovery runs through the real ``importlib.metadata``: each test builds fake installed
distributions (``*.dist-info`` with ``entry_points.txt``) in ``tmp_path`` and puts that
directory on ``sys.path``. Every test that changes the registry runs inside
``ConnectorRegistry.isolated()`` so no state leaks into other tests.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from adapters.connectors.base_connector import BaseConnector
from adapters.connectors.dropzone_json_v1 import DropzoneJsonV1Connector
from adapters.connectors.mock import MockConnector
from adapters.connectors.registry import (
    ENTRY_POINT_GROUP,
    ConnectorConflictError,
    ConnectorRegistry,
    UnknownConnectorError,
)
from domain.ports import ExportResult, TestResult


class AlphaConnector(BaseConnector):
    connector_type = "ALPHA_TEST"

    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        return ExportResult(success=True, export_id=draft_order.id)

    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        return self.build_test_result(True)


class BetaConnector(AlphaConnector):
    pass


class NotAConnector:
    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        raise NotImplementedError


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    with ConnectorRegistry.isolated():
        yield


# --- register / get ---------------------------------------------------------------------


def test_register_then_get_returns_one_shared_instance() -> None:
    ConnectorRegistry.register("ALPHA_TEST", AlphaConnector)
    first = ConnectorRegistry.get("ALPHA_TEST")
    assert type(first) is AlphaConnector
    assert ConnectorRegistry.get("ALPHA_TEST") is first


def test_unknown_type_is_a_value_error_with_the_seed_message() -> None:
    with pytest.raises(ValueError) as excinfo:
        ConnectorRegistry.get("MY_ERP")
    assert str(excinfo.value) == "Unknown connector type: 'MY_ERP'"
    assert isinstance(excinfo.value, UnknownConnectorError)
    assert excinfo.value.connector_type == "MY_ERP"


def test_unknown_type_message_quotes_the_name_verbatim() -> None:
    with pytest.raises(UnknownConnectorError) as excinfo:
        ConnectorRegistry.get("it's")
    assert str(excinfo.value) == 'Unknown connector type: "it\'s"'


def test_registering_the_same_class_twice_is_harmless() -> None:
    ConnectorRegistry.register("ALPHA_TEST", AlphaConnector)
    instance = ConnectorRegistry.get("ALPHA_TEST")
    ConnectorRegistry.register("ALPHA_TEST", AlphaConnector)
    assert ConnectorRegistry.get("ALPHA_TEST") is instance


def test_a_different_class_for_a_taken_type_is_a_conflict() -> None:
    ConnectorRegistry.register("ALPHA_TEST", AlphaConnector)
    instance = ConnectorRegistry.get("ALPHA_TEST")
    with pytest.raises(ConnectorConflictError) as excinfo:
        ConnectorRegistry.register("ALPHA_TEST", BetaConnector)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)
    assert "'ALPHA_TEST'" in message
    assert f"{__name__}:AlphaConnector" in message
    assert f"{__name__}:BetaConnector" in message
    assert ConnectorRegistry.get("ALPHA_TEST") is instance  # the first one stays


def test_replace_swaps_the_class_and_the_instance() -> None:
    ConnectorRegistry.register("ALPHA_TEST", AlphaConnector)
    old = ConnectorRegistry.get("ALPHA_TEST")
    ConnectorRegistry.register("ALPHA_TEST", BetaConnector, replace=True)
    new = ConnectorRegistry.get("ALPHA_TEST")
    assert type(new) is BetaConnector
    assert new is not old


@pytest.mark.parametrize("bad", [NotAConnector, AlphaConnector(), "adapters.connectors.mock", None])
def test_registering_something_that_is_not_a_port_class_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="does not implement ERPConnectorPort"):
        ConnectorRegistry.register("ALPHA_TEST", bad)
    with pytest.raises(UnknownConnectorError):
        ConnectorRegistry.get("ALPHA_TEST")


@pytest.mark.parametrize("name", ["", None, 42])
def test_connector_type_must_be_a_non_empty_string(name: Any) -> None:
    with pytest.raises(ValueError, match="connector_type must be a non-empty string"):
        ConnectorRegistry.register(name, AlphaConnector)


def test_unregister_removes_type_and_instance() -> None:
    ConnectorRegistry.register("ALPHA_TEST", AlphaConnector)
    ConnectorRegistry.get("ALPHA_TEST")
    ConnectorRegistry.unregister("ALPHA_TEST")
    with pytest.raises(UnknownConnectorError):
        ConnectorRegistry.get("ALPHA_TEST")
    ConnectorRegistry.unregister("ALPHA_TEST")  # unregistering twice is harmless


def test_isolated_restores_the_previous_state() -> None:
    mock = ConnectorRegistry.get("MOCK")
    with ConnectorRegistry.isolated():
        ConnectorRegistry.register("ALPHA_TEST", AlphaConnector)
        ConnectorRegistry.register("MOCK", BetaConnector, replace=True)
        assert type(ConnectorRegistry.get("MOCK")) is BetaConnector
    with pytest.raises(UnknownConnectorError):
        ConnectorRegistry.get("ALPHA_TEST")
    assert ConnectorRegistry.get("MOCK") is mock


def test_isolated_restores_even_after_an_error() -> None:
    with pytest.raises(RuntimeError), ConnectorRegistry.isolated():
        ConnectorRegistry.register("ALPHA_TEST", AlphaConnector)
        raise RuntimeError("boom")
    assert "ALPHA_TEST" not in ConnectorRegistry.known_types()


# --- built-in entry points --------------------------------------------------------------


def test_builtins_come_from_this_projects_entry_points() -> None:
    ConnectorRegistry.unregister("MOCK")
    ConnectorRegistry.unregister("DROPZONE_JSON_V1")
    found = ConnectorRegistry.discover()
    assert {"MOCK", "DROPZONE_JSON_V1"} <= set(found)
    assert found == sorted(found)
    assert type(ConnectorRegistry.get("MOCK")) is MockConnector
    assert type(ConnectorRegistry.get("DROPZONE_JSON_V1")) is DropzoneJsonV1Connector
    assert {"MOCK", "DROPZONE_JSON_V1"} <= ConnectorRegistry.known_types()


def test_a_fresh_process_resolves_builtins_without_registering() -> None:
    """``get`` discovers lazily: no start-up code needs to register the built-ins."""
    code = (
        "from adapters.connectors.registry import ConnectorRegistry\n"
        "print(type(ConnectorRegistry.get('DROPZONE_JSON_V1')).__name__)\n"
        "print(type(ConnectorRegistry.get('MOCK')).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["DropzoneJsonV1Connector", "MockConnector"]


# --- third-party distributions ----------------------------------------------------------


class FakeDistributions:
    """Writes fake installed distributions into a directory on ``sys.path``."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.modules: list[str] = []
        monkeypatch.syspath_prepend(str(root))

    def module(self, body: str = "") -> str:
        """Write a plugin module with connectors ``PluginConnector`` and ``OtherConnector``."""
        name = f"orderflow_test_plugin_{uuid.uuid4().hex[:12]}"
        source = textwrap.dedent(
            """
            from adapters.connectors.base_connector import BaseConnector
            from domain.ports import ExportResult


            class PluginConnector(BaseConnector):
                connector_type = "ACME_ERP"

                def export(self, draft_order, config):
                    return ExportResult(success=True, export_id=draft_order.id)

                def test_connection(self, config):
                    return self.build_test_result(True)


            class OtherConnector(PluginConnector):
                pass


            class NotAConnector:
                pass
            """
        )
        (self.root / f"{name}.py").write_text(source + body, encoding="utf-8")
        self.modules.append(name)
        return name

    def distribution(self, name: str, entry_points: Mapping[str, str]) -> None:
        """Write ``{name}-1.0.dist-info`` declaring ``entry_points`` in our group."""
        info = self.root / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8"
        )
        lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        importlib.invalidate_caches()

    def cleanup(self) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)


@pytest.fixture
def dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDistributions]:
    fake = FakeDistributions(tmp_path, monkeypatch)
    try:
        yield fake
    finally:
        fake.cleanup()
        importlib.invalidate_caches()


def test_discover_finds_an_installed_third_party_connector(dists: FakeDistributions) -> None:
    module = dists.module()
    dists.distribution("acme-erp-connector", {"ACME_ERP": f"{module}:PluginConnector"})
    found = ConnectorRegistry.discover()
    assert "ACME_ERP" in found
    assert {"MOCK", "DROPZONE_JSON_V1"} <= set(found)
    connector = ConnectorRegistry.get("ACME_ERP")
    assert type(connector).__module__ == module
    assert type(connector).__name__ == "PluginConnector"
    assert ConnectorRegistry.get("ACME_ERP") is connector
    assert "ACME_ERP" in ConnectorRegistry.known_types()


def test_plugin_is_gone_once_uninstalled(dists: FakeDistributions) -> None:
    """Guards the other tests: nothing of a fake distribution survives its test."""
    with pytest.raises(UnknownConnectorError):
        ConnectorRegistry.get("ACME_ERP")


def test_two_distributions_claiming_one_type_is_a_conflict_naming_both(
    dists: FakeDistributions,
) -> None:
    module = dists.module()
    dists.distribution("acme-one", {"ACME_ERP": f"{module}:PluginConnector"})
    dists.distribution("acme-two", {"ACME_ERP": f"{module}:OtherConnector"})
    with pytest.raises(ConnectorConflictError) as excinfo:
        ConnectorRegistry.discover()
    message = str(excinfo.value)
    assert message.startswith("Connector type 'ACME_ERP' is claimed by both ")
    assert f"acme-one ({module}:PluginConnector)" in message
    assert f"acme-two ({module}:OtherConnector)" in message
    assert message.endswith("uninstall one of them")
    assert isinstance(excinfo.value, ValueError)
    # Nothing of the conflicting discovery was registered: get() fails (Unknown, or the
    # conflict again if discovery had not run before in this process).
    with pytest.raises((UnknownConnectorError, ConnectorConflictError)):
        ConnectorRegistry.get("ACME_ERP")


def test_two_distributions_naming_the_same_class_do_not_conflict(
    dists: FakeDistributions,
) -> None:
    module = dists.module()
    dists.distribution("acme-one", {"ACME_ERP": f"{module}:PluginConnector"})
    dists.distribution("acme-one-again", {"ACME_ERP": f"{module}:PluginConnector"})
    assert "ACME_ERP" in ConnectorRegistry.discover()
    assert type(ConnectorRegistry.get("ACME_ERP")).__name__ == "PluginConnector"


def test_entry_point_that_is_not_a_connector_is_a_type_error_naming_the_distribution(
    dists: FakeDistributions,
) -> None:
    module = dists.module()
    dists.distribution("acme-broken", {"ACME_ERP": f"{module}:NotAConnector"})
    with pytest.raises(TypeError) as excinfo:
        ConnectorRegistry.discover()
    assert f"acme-broken ({module}:NotAConnector)" in str(excinfo.value)
    assert "does not name an ERPConnectorPort class" in str(excinfo.value)


def test_plugin_cannot_silently_replace_a_builtin(dists: FakeDistributions) -> None:
    module = dists.module()
    dists.distribution("evil-mock", {"MOCK": f"{module}:PluginConnector"})
    with pytest.raises(ConnectorConflictError) as excinfo:
        ConnectorRegistry.discover()
    assert "evil-mock" in str(excinfo.value)
    assert "orderflow-erp-push" in str(excinfo.value)


def test_discover_of_another_group_registers_only_that_group(dists: FakeDistributions) -> None:
    module = dists.module()
    info = dists.root / "acme_group-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-group\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[orderflow.test_connectors]\nACME_ERP = {module}:PluginConnector\n"
    )
    importlib.invalidate_caches()
    assert ConnectorRegistry.discover("orderflow.test_connectors") == ["ACME_ERP"]
    assert type(ConnectorRegistry.get("ACME_ERP")).__name__ == "PluginConnector"
