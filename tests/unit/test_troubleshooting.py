"""The seed's "Troubleshooting" section, case by case: the documented error, and its fix.

The ``IntegrityError ... "idx_erp_push_log_idempotency"`` case needs PostgreSQL; it is
covered in tests/integration/test_postgres_schema.py
(``test_duplicate_idempotency_key_raises_integrity_error_naming_the_seed_index``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from adapters.connectors.base_connector import BaseConnector
from adapters.connectors.registry import ConnectorRegistry
from adapters.crypto.encryption import ConfigCipher, EncryptionError, EncryptionService
from adapters.crypto.keys import MASTER_KEY_ENV, OLD_KEYS_ENV, MasterKeyring
from domain.ports import ExportResult, TestResult

KEY_ORIGINAL = "0f" * 32
KEY_CHANGED = "e1" * 32
ORG = uuid.UUID("5a0c4f0e-3b6d-4c8e-9f1a-2b3c4d5e6f70")
CONFIG = {"host": "sftp.example.com", "password": "troubleshooting-Secret-1"}


def seed_line(exc: BaseException, name: str) -> str:
    """The last line of a traceback as the seed prints it: ``Name: message``."""
    assert isinstance(exc, EncryptionError if name == "EncryptionError" else ValueError)
    return f"{name}: {exc}"


class MyConnector(BaseConnector):
    connector_type = "MY_ERP"

    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        return ExportResult(success=True, export_id=draft_order.id)

    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        return self.build_test_result(True)


@pytest.fixture
def registry() -> Iterator[type[ConnectorRegistry]]:
    with ConnectorRegistry.isolated():
        yield ConnectorRegistry


@pytest.fixture
def original_key(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv(MASTER_KEY_ENV, KEY_ORIGINAL)
    monkeypatch.delenv(OLD_KEYS_ENV, raising=False)
    return monkeypatch


# --- Connector Not Found ------------------------------------------------------------------


def test_connector_not_found(registry: type[ConnectorRegistry]) -> None:
    with pytest.raises(ValueError) as excinfo:
        registry.get("MY_ERP")
    assert seed_line(excinfo.value, "ValueError") == "ValueError: Unknown connector type: 'MY_ERP'"


def test_connector_not_found_solution_register_at_startup(
    registry: type[ConnectorRegistry],
) -> None:
    registry.register("MY_ERP", MyConnector)
    assert isinstance(registry.get("MY_ERP"), MyConnector)


# --- Decryption Failed --------------------------------------------------------------------

TAG_LINE = "EncryptionError: authentication tag verification failed"


def test_decryption_failed_because_the_master_key_changed(
    original_key: pytest.MonkeyPatch,
) -> None:
    blob = EncryptionService.encrypt_config(CONFIG, org_id=ORG, connector_type="MOCK")
    original_key.setenv(MASTER_KEY_ENV, KEY_CHANGED)
    with pytest.raises(EncryptionError) as excinfo:
        EncryptionService.decrypt_config(blob, org_id=ORG, connector_type="MOCK")
    assert seed_line(excinfo.value, "EncryptionError").startswith(TAG_LINE)
    assert type(excinfo.value) is EncryptionError
    # Solution: the environment variable must match the original key again ...
    original_key.setenv(MASTER_KEY_ENV, KEY_ORIGINAL)
    assert EncryptionService.decrypt_config(blob, org_id=ORG, connector_type="MOCK") == CONFIG
    # ... or, when rotating on purpose, keep the original among the old keys.
    original_key.setenv(MASTER_KEY_ENV, KEY_CHANGED)
    original_key.setenv(OLD_KEYS_ENV, KEY_ORIGINAL)
    assert EncryptionService.decrypt_config(blob, org_id=ORG, connector_type="MOCK") == CONFIG


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 0x01]), id="tag"),
        pytest.param(lambda b: b[:25] + bytes([b[25] ^ 0x40]) + b[26:], id="ciphertext"),
        pytest.param(lambda b: b[:10] + bytes([b[10] ^ 0xFF]) + b[11:], id="nonce"),
        pytest.param(lambda b: b[:-5], id="truncated"),
        pytest.param(lambda b: b"\x00" + b[1:], id="header"),
    ],
)
def test_decryption_failed_because_the_data_is_corrupted(
    original_key: pytest.MonkeyPatch, corrupt: Any
) -> None:
    blob = EncryptionService.encrypt_config(CONFIG, org_id=ORG, connector_type="MOCK")
    with pytest.raises(EncryptionError) as excinfo:
        EncryptionService.decrypt_config(corrupt(blob), org_id=ORG, connector_type="MOCK")
    assert seed_line(excinfo.value, "EncryptionError").startswith(TAG_LINE)


def test_decryption_failed_because_the_wrong_key_is_used() -> None:
    blob = ConfigCipher(MasterKeyring.from_hex(KEY_ORIGINAL)).encrypt_config(
        CONFIG, org_id=ORG, connector_type="MOCK"
    )
    wrong = ConfigCipher(MasterKeyring.from_hex(KEY_CHANGED))
    with pytest.raises(EncryptionError) as excinfo:
        wrong.decrypt_config(blob, org_id=ORG, connector_type="MOCK")
    assert seed_line(excinfo.value, "EncryptionError").startswith(TAG_LINE)
    assert KEY_ORIGINAL not in str(excinfo.value)
    assert KEY_CHANGED not in str(excinfo.value)


def test_decryption_failed_because_the_blob_belongs_to_another_organisation(
    original_key: pytest.MonkeyPatch,
) -> None:
    """A right key with the wrong binding (a row copied between orgs) fails the same way."""
    blob = EncryptionService.encrypt_config(CONFIG, org_id=ORG, connector_type="MOCK")
    with pytest.raises(EncryptionError) as excinfo:
        EncryptionService.decrypt_config(blob, org_id=uuid.uuid4(), connector_type="MOCK")
    assert seed_line(excinfo.value, "EncryptionError").startswith(TAG_LINE)
