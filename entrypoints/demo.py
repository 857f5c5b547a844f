"""``make demo``: the connector framework end to end on the local services.

Migrates the database, creates an organisation with an encrypted
DROPZONE_JSON_V1 connection to the local SFTP server, tests it, approves a
few draft orders (order + outbox event in one transaction), pushes each
through ``PushOrchestrator``, pushes them all a second time to show that
idempotency keeps the ERP effect exactly once, and counts the files that
really landed in the SFTP dropzone. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from adapters.connectors.dropzone_json_v1 import DropzoneJsonV1Connector
from adapters.connectors.registry import ConnectorRegistry
from adapters.crypto.encryption import ConfigCipher
from adapters.crypto.keys import MASTER_KEY_ENV, generate_master_key
from adapters.postgres import migrate
from domain.model import DraftOrder, OrderLine
from domain.records import ConnectionRecord
from entrypoints import bootstrap
from entrypoints.settings import Settings, SettingsError
from producer.approval import approve_draft_order

CONNECTOR_TYPE = "DROPZONE_JSON_V1"


def _ensure_master_key(state_dir: Path) -> str:
    """Use ``$ENCRYPTION_MASTER_KEY``, else a demo key kept (mode 600) in the state dir.

    Keeping it means connections stored by an earlier demo run still decrypt.
    """
    if os.environ.get(MASTER_KEY_ENV):
        return "from the environment"
    key_file = state_dir / "demo-master-key"
    if not key_file.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(generate_master_key() + "\n", encoding="ascii")
        key_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    os.environ[MASTER_KEY_ENV] = key_file.read_text(encoding="ascii").strip()
    return f"demo key from {key_file}"


def _require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"demo: {name} is not set; run it through `make demo`")
    return value


def _dropzone_config() -> dict[str, object]:
    return {
        "host": _require("SFTP_HOST"),
        "port": int(_require("SFTP_PORT")),
        "username": _require("SFTP_USERNAME"),
        "private_key": Path(_require("SFTP_PRIVATE_KEY_PATH")).read_text(encoding="ascii"),
        "host_key": _require("SFTP_HOST_KEY"),
        "remote_dir": _require("SFTP_DROPZONE_DIR"),
        "timeout_s": 10,
    }


def _demo_order(org_id: uuid.UUID, index: int) -> DraftOrder:
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


def _count_dropzone_files(config: dict[str, object], org_id: uuid.UUID) -> int:
    """Count the order files that really exist in the org's dropzone folder (over SFTP)."""
    connector = DropzoneJsonV1Connector()
    try:
        params = connector.connection_params(connector.prepare_config(config))
        folder = f"{str(config['remote_dir']).rstrip('/')}/{org_id}"
        with connector.pool.session(params) as session:
            names = session.sftp.listdir(folder)
    finally:
        connector.close()
    return sum(1 for name in names if name.endswith(".json") and not name.startswith("."))


def run(orders: int) -> int:
    """Run the demo with ``orders`` draft orders; return the process exit status."""
    settings = Settings.from_env()
    database_url = settings.require_database_url()
    state_dir = Path(os.environ.get("ORDERFLOW_INFRA_DIR") or Path.cwd() / ".infra")
    key_source = _ensure_master_key(state_dir)

    migrate.upgrade(database_url)
    print(f"database migrated to {migrate.current_revision(database_url)}")
    print(f"master key: {key_source}")

    org_id = uuid.uuid4()
    config = _dropzone_config()
    blob = ConfigCipher.from_env().encrypt_config(
        config, org_id=org_id, connector_type=CONNECTOR_TYPE
    )
    factory = bootstrap.session_factory(database_url=database_url)
    uow = bootstrap.sql_unit_of_work(session_factory=factory)
    with uow:
        uow.connections.add(ConnectionRecord.new(org_id, CONNECTOR_TYPE, blob))
        uow.commit()
    connector = ConnectorRegistry.get(CONNECTOR_TYPE)
    print(
        f"organisation {org_id}: encrypted {CONNECTOR_TYPE} connection stored "
        f"({len(blob)} bytes of AES-256-GCM)"
    )
    test = connector.test_connection(config)
    print(
        f"connection test: {'ok' if test.success else 'FAILED at ' + str(test.stage)} "
        f"in {test.latency_ms:.0f} ms"
    )
    if not test.success:
        print(f"  {test.error_message}")
        return 1

    drafts = [_demo_order(org_id, i + 1) for i in range(orders)]
    for draft in drafts:
        approve_draft_order(uow, org_id, draft)
    print(f"approved {len(drafts)} draft orders (each with its outbox event)")

    print(f"{'order':<12} {'status':<8} {'attempts':>8} {'latency':>9}  file")
    succeeded = failed = 0
    first_entries: dict[uuid.UUID, uuid.UUID] = {}
    for draft in drafts:
        with factory() as session:
            entry = bootstrap.build_push_orchestrator(session).push_order(org_id, draft)
        first_entries[draft.id] = entry.id
        ok = str(entry.status) == "SUCCESS"
        succeeded += ok
        failed += not ok
        where = (entry.response_json or {}).get("storage_key") or entry.error_message
        print(
            f"{draft.order_number:<12} {entry.status!s:<8} {entry.retry_count + 1:>8} "
            f"{entry.latency_ms or 0:>7} ms  {where}"
        )

    # Push everything again: idempotency must keep the ERP effect exactly once.
    # A repeat answered by a different push log row would mean a second export.
    repeats_exported = 0
    for draft in drafts:
        with factory() as session:
            entry = bootstrap.build_push_orchestrator(session).push_order(org_id, draft)
        repeats_exported += entry.id != first_entries[draft.id]
    files = _count_dropzone_files(config, org_id)
    duplicates = max(0, files - succeeded) + repeats_exported
    print(f"second push of all {len(drafts)} orders: answered from the push log")
    print(f"files in the SFTP dropzone for this organisation: {files}")
    print(
        f"demo: approved={len(drafts)} succeeded={succeeded} failed={failed} "
        f"files={files} duplicates={duplicates}"
    )
    return 0 if succeeded == len(drafts) and files == succeeded and duplicates == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the demo."""
    parser = argparse.ArgumentParser(prog="python -m entrypoints.demo", description=__doc__)
    parser.add_argument(
        "--orders",
        type=int,
        default=int(os.environ.get("DEMO_ORDERS", "5")),
        help="how many draft orders to approve and push (default 5)",
    )
    args = parser.parse_args(argv)
    if args.orders < 1:
        parser.error("--orders must be at least 1")
    try:
        return run(args.orders)
    except SettingsError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
