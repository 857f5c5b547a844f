"""Config blobs written by the format 1 encryption code (before the form byte), kept as bytes.

Made with commit 008a53f's ``ConfigCipher`` under ``KEY``: ``BOUND`` with
``encrypt_config(CONFIG, org_id=ORG, connector_type=CTYPE)``, ``UNBOUND`` with
``encrypt_config(CONFIG)`` (the empty binding). Stored rows hold such blobs; they
must keep decrypting.
"""

from __future__ import annotations

import uuid
from typing import Any

KEY = "a1" * 32
ORG = uuid.UUID("0b6f3c1e-0d1a-4a57-9a51-3f5a0f2f1e01")
CTYPE = "DROPZONE_JSON_V1"
CONFIG: dict[str, Any] = {
    "host": "sftp.example.com",
    "port": 22,
    "password": "pa55-W0rd-never-in-any-message",
}

BOUND = bytes.fromhex(
    "4f4643012c574fd53c0504308a1f879d4a770b2467f975234ca27e5b1a735b7b60c140ca86037b785a5c08e5"
    "d160a8315a4023a000a50f46b963b9ba8e66e480778754f435e7407c3d63f9e6f52086d3622b243c57960cf0"
    "11b02fa0c9b750478a82d7351b3240601231d4657c1ac3bb9435db330d"
)
UNBOUND = bytes.fromhex(
    "4f4643012c574fd5252e6e0017ce8eef83a2049662eac8ad8a6b033306f6ab775a89550067f3c66e4aca4874"
    "a8098d2486a1df0cca48070292e7c7b206e9a170b9038bbbda9686b2e79a6e46b77910b7f0963006b3671b21"
    "a534a42d77c044ad2b6c86d6bd5c134e422f1706e2bf59fa032c04c630"
)
