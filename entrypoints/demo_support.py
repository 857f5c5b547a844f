"""What both demos share: the demo key, the dropzone config, demo orders, file counts.

The demos run against the local services of ``python -m infra up`` (their
endpoints come from the environment that ``make demo`` exports).
"""

from __future__ import annotations

import math
import os
import stat
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from adapters.connectors.dropzone_json_v1 import DropzoneJsonV1Connector
from adapters.connectors.registry import ConnectorRegistry
from adapters.crypto.encryption import ConfigCipher
from adapters.crypto.keys import MASTER_KEY_ENV, generate_master_key
from domain.model import DraftOrder, OrderLine
from domain.records import ConnectionRecord
from domain.repositories import UnitOfWork

#: The connector both demos export through by default.
CONNECTOR_TYPE = "DROPZONE_JSON_V1"


def state_dir() -> Path:
    """The local infrastructure's state dir (``$ORDERFLOW_INFRA_DIR``, else ``./.infra``)."""
    return Path(os.environ.get("ORDERFLOW_INFRA_DIR") or Path.cwd() / ".infra")


def ensure_master_key(directory: Path) -> str:
    """Use ``$ENCRYPTION_MASTER_KEY``, else a demo key kept (mode 600) in ``directory``.

    Keeping it means connections stored by an earlier demo run still decrypt. The
    key is put into this process's environment, so child processes inherit it.
    Returns where the key came from (never the key).
    """
    if os.environ.get(MASTER_KEY_ENV):
        return "from the environment"
    key_file = directory / "demo-master-key"
    if not key_file.exists():
        directory.mkdir(parents=True, exist_ok=True)
        key_file.write_text(generate_master_key() + "\n", encoding="ascii")
        key_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    os.environ[MASTER_KEY_ENV] = key_file.read_text(encoding="ascii").strip()
    return f"demo key from {key_file}"


def require_env(name: str, command: str = "make demo") -> str:
    """The value of environment variable ``name``; exit with a clear line if it is unset."""
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"demo: {name} is not set; run it through `{command}`")
    return value


def dropzone_config() -> dict[str, object]:
    """A DROPZONE_JSON_V1 config for the local SFTP server (key auth, pinned host key)."""
    return {
        "host": require_env("SFTP_HOST"),
        "port": int(require_env("SFTP_PORT")),
        "username": require_env("SFTP_USERNAME"),
        "private_key": Path(require_env("SFTP_PRIVATE_KEY_PATH")).read_text(encoding="ascii"),
        "host_key": require_env("SFTP_HOST_KEY"),
        "remote_dir": require_env("SFTP_DROPZONE_DIR"),
        "timeout_s": 10,
    }


def create_demo_organisation(
    uow: UnitOfWork, connector_type: str, config: dict[str, object]
) -> uuid.UUID | None:
    """Store a new organisation's encrypted connection and test it; return the org id.

    Prints what it did (never the config). Returns ``None`` if the connection
    test failed (after printing the failed stage).
    """
    org_id = uuid.uuid4()
    blob = ConfigCipher.from_env().encrypt_config(
        config, org_id=org_id, connector_type=connector_type
    )
    with uow:
        uow.connections.add(ConnectionRecord.new(org_id, connector_type, blob))
        uow.commit()
    print(
        f"organisation {org_id}: encrypted {connector_type} connection stored "
        f"({len(blob)} bytes of AES-256-GCM)"
    )
    test = ConnectorRegistry.get(connector_type).test_connection(config)
    outcome = "ok" if test.success else f"FAILED at {test.stage}: {test.error_message}"
    print(f"connection test: {outcome} ({test.latency_ms:.0f} ms)")
    return org_id if test.success else None


def demo_order(org_id: uuid.UUID, index: int) -> DraftOrder:
    """Draft order number ``index`` of the demo: three lines, one of seven customers."""
    return DraftOrder(
        id=uuid.uuid4(),
        org_id=org_id,
        order_number=f"DEMO-{index:05d}",
        customer_code=f"CUST-{100 + index % 7}",
        currency="EUR",
        lines=tuple(
            OrderLine(
                line_no=n,
                product_code=f"SKU-{n:03d}",
                quantity=Decimal(n),
                unit_price=Decimal("9.95") * n,
                description=f"Demo article {n}",
            )
            for n in range(1, 4)
        ),
        notes="Approved by the OrderFlow demo",
    )


def count_dropzone_files(config: dict[str, object], org_id: uuid.UUID) -> int:
    """Count the order files that really exist in the org's dropzone folder (over SFTP).

    Temporary upload files (dot-prefixed) do not count: they are not orders yet.
    """
    connector = DropzoneJsonV1Connector()
    try:
        params = connector.connection_params(connector.prepare_config(config))
        folder = f"{str(config['remote_dir']).rstrip('/')}/{org_id}"
        with connector.pool.session(params) as session:
            try:
                names = session.sftp.listdir(folder)
            except FileNotFoundError:  # nothing exported yet
                return 0
    finally:
        connector.close()
    return sum(1 for name in names if name.endswith(".json") and not name.startswith("."))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class ErpTarget:
    """Where a demo exports to, and how it counts the documents that really landed there."""

    #: ``make demo ERP=<name>``.
    name: str
    connector_type: str
    config: dict[str, object]
    #: What one exported draft order becomes there ("order files", "sale orders").
    documents: str
    #: Documents of one organisation, counted in the ERP itself (not via the connector).
    count_documents: Callable[[uuid.UUID], int]
    #: Extra flags of the push worker for this ERP.
    worker_args: tuple[str, ...] = ()


def dropzone_target() -> ErpTarget:
    """The local SFTP dropzone (DROPZONE_JSON_V1), files counted over SFTP."""
    config = dropzone_config()
    return ErpTarget(
        name="dropzone",
        connector_type=CONNECTOR_TYPE,
        config=config,
        documents="order files in the SFTP dropzone",
        count_documents=lambda org_id: count_dropzone_files(config, org_id),
    )


def tryton_target() -> ErpTarget:
    """The local Tryton ERP (started if needed), sale orders counted in its database."""
    from infra import tryton

    server = tryton.ensure(progress=lambda message: print(f"[tryton] {message}"))
    print(f"Tryton at {server.url} (database {server.database})")
    return ErpTarget(
        name="tryton",
        connector_type="TRYTON",
        # A request that times out may still commit later, and Tryton has no
        # idempotency key: a retry searching the reference then finds nothing and
        # creates a second sale. A generous timeout keeps that window closed here.
        config=server.as_config(timeout_s=120),
        documents="sale orders in Tryton",
        count_documents=lambda org_id: tryton.count_sales(server, reference_prefix=f"{org_id}:"),
    )


#: ``make demo ERP=...`` choices.
ERP_TARGETS: dict[str, Callable[[], ErpTarget]] = {
    "dropzone": dropzone_target,
    "tryton": tryton_target,
}
