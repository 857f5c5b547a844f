"""``make demo-sync``: the connector framework without Kafka, on the local services.

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
import sys
import uuid
from collections.abc import Sequence

from adapters.postgres import migrate
from entrypoints import bootstrap
from entrypoints.demo_support import (
    CONNECTOR_TYPE,
    count_dropzone_files,
    create_demo_organisation,
    demo_order,
    dropzone_config,
    ensure_master_key,
    state_dir,
)
from entrypoints.settings import Settings, SettingsError
from producer.approval import approve_draft_order


def run(orders: int) -> int:
    """Run the demo with ``orders`` draft orders; return the process exit status."""
    settings = Settings.from_env()
    database_url = settings.require_database_url()
    key_source = ensure_master_key(state_dir())

    migrate.upgrade(database_url)
    print(f"database migrated to {migrate.current_revision(database_url)}")
    print(f"master key: {key_source}")

    config = dropzone_config()
    factory = bootstrap.session_factory(database_url=database_url)
    uow = bootstrap.sql_unit_of_work(session_factory=factory)
    org_id = create_demo_organisation(uow, CONNECTOR_TYPE, config)
    if org_id is None:
        return 1

    drafts = [demo_order(org_id, i + 1) for i in range(orders)]
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
    files = count_dropzone_files(config, org_id)
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
    parser = argparse.ArgumentParser(prog="python -m entrypoints.sync_demo", description=__doc__)
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
