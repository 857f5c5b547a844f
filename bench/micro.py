"""Micro-benchmarks: AES-GCM decrypt of a connector config and ``ConnectorRegistry.get``.

Microseconds per operation, the best of several ``timeit`` repeats (the least
disturbed by other processes on a shared machine), against the seed's budgets.
"""

from __future__ import annotations

import base64
import os
import timeit
import uuid
from collections.abc import Callable

from adapters.connectors.registry import ConnectorRegistry
from adapters.crypto.encryption import ConfigCipher
from adapters.crypto.keys import MASTER_KEY_ENV, generate_master_key

#: The seed's budgets (README "Benchmarks"): decrypt < 5 ms, registry get < 10 ms.
SEED_DECRYPT_BUDGET_US = 5_000.0
SEED_REGISTRY_BUDGET_US = 10_000.0


def typical_config() -> dict[str, object]:
    """A DROPZONE_JSON_V1 config as organisations store it (key auth, pinned host key)."""
    key_body = base64.b64encode(os.urandom(300)).decode()
    return {
        "host": "sftp.erp.example.com",
        "port": 22,
        "username": "orderflow-export",
        "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        + "\n".join(key_body[i : i + 70] for i in range(0, len(key_body), 70))
        + "\n-----END OPENSSH PRIVATE KEY-----\n",
        "host_key": "ssh-ed25519 " + base64.b64encode(os.urandom(51)).decode(),
        "remote_dir": "/incoming/orders",
        "timeout_s": 10,
    }


def _best_us(statement: Callable[[], object], number: int, repeat: int) -> float:
    timer = timeit.Timer(statement)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def run_micro(number: int = 2000, repeat: int = 7) -> dict[str, float]:
    """µs per decrypt and per registry get (best of ``repeat`` runs of ``number`` calls)."""
    cipher = ConfigCipher.from_env({MASTER_KEY_ENV: generate_master_key()})
    org_id = uuid.uuid4()
    blob = cipher.encrypt_config(typical_config(), org_id=org_id, connector_type="DROPZONE_JSON_V1")

    def decrypt() -> None:
        cipher.decrypt_config(blob, org_id=org_id, connector_type="DROPZONE_JSON_V1")

    def registry_get() -> None:
        ConnectorRegistry.get("MOCK")

    registry_get()  # the first call builds the connector; steady state is what runs per push
    return {
        "decrypt_us": _best_us(decrypt, number, repeat),
        "registry_get_us": _best_us(registry_get, number * 10, repeat),
        "config_blob_bytes": float(len(blob)),
        "decrypt_budget_us": SEED_DECRYPT_BUDGET_US,
        "registry_get_budget_us": SEED_REGISTRY_BUDGET_US,
    }
