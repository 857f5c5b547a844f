"""``orderflow keys rewrap``: every stored connector config bound, under the primary key.

After a key rotation (new ``ENCRYPTION_MASTER_KEY``, the previous one in
``ENCRYPTION_OLD_KEYS``) each ``erp_connection`` row whose blob names another
key id is decrypted and re-encrypted under the primary key with the same
(org_id, connector_type) binding. A row whose blob is unbound (made by
``encrypt_config(config)`` without context, as the seed writes it) is
re-encrypted bound to its own row's org_id and connector_type, and a format 1
blob is rewritten in the current format. Rows are walked in id order in
batches, one transaction per batch; a row is only overwritten if its blob is
still the one that was read (a concurrent change wins). Rows already bound
under the primary key are left alone, so a second run changes nothing.

A row that does not decrypt (unknown key, corrupted, wrong binding) is reported
by id only and the other rows still proceed. Nothing here prints or logs a
config, a key or an error text that could carry one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select, update

from adapters.crypto.encryption import ConfigCipher, OpenedConfig
from adapters.crypto.keys import EncryptionError
from adapters.postgres.engine import make_engine
from adapters.postgres.models import ERPConnection

DEFAULT_BATCH_SIZE = 100


@dataclass
class RewrapReport:
    """What a rewrap run found and did (ids only: never a secret)."""

    dry_run: bool
    scanned: int = 0
    #: Rows left alone: bound, under the primary key, current format.
    already_primary: int = 0
    #: Bound blobs re-encrypted under the primary key (another key, or format 1).
    rewrapped: int = 0
    #: Unbound blobs re-encrypted bound to their row's org_id and connector_type.
    bound: int = 0
    #: Dry run: rows that would be counted in ``rewrapped`` / ``bound``.
    would_rewrap: int = 0
    would_bind: int = 0
    changed_concurrently: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every row is (or, dry run, could be) bound under the primary key."""
        return not self.failed and not self.changed_concurrently

    def view(self) -> dict[str, object]:
        """The report as printed by the CLI."""
        return {
            "dry_run": self.dry_run,
            "scanned": self.scanned,
            "already_primary": self.already_primary,
            "rewrapped": self.rewrapped,
            "bound": self.bound,
            "would_rewrap": self.would_rewrap,
            "would_bind": self.would_bind,
            "changed_concurrently": [str(i) for i in self.changed_concurrently],
            "failed": [str(i) for i in self.failed],
        }


def rewrap_all(
    database_url: str,
    cipher: ConfigCipher,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> RewrapReport:
    """Rewrap every ``erp_connection`` blob not bound under ``cipher``'s primary key.

    With ``dry_run`` nothing is written: the report counts what would be
    rewrapped or bound (each such blob is still decrypted, so undecryptable
    rows show up). ``ENCRYPTION_REQUIRE_BOUND`` does not stop it reading
    unbound blobs: binding them is what it is for.
    """
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    report = RewrapReport(dry_run=dry_run)
    row_type = ERPConnection
    engine = make_engine(database_url)
    try:
        last: uuid.UUID | None = None
        while True:
            with engine.begin() as conn:
                query = (
                    select(
                        row_type.id,
                        row_type.org_id,
                        row_type.connector_type,
                        row_type.config_encrypted,
                    )
                    .order_by(row_type.id)
                    .limit(batch_size)
                )
                if last is not None:
                    query = query.where(row_type.id > last)
                rows = conn.execute(query).all()
                if not rows:
                    break
                last = rows[-1].id
                for row in rows:
                    report.scanned += 1
                    blob = bytes(row.config_encrypted)
                    try:
                        if not cipher.needs_rewrap(blob):
                            report.already_primary += 1
                            continue
                        opened = cipher.open_config(
                            blob, org_id=row.org_id, connector_type=row.connector_type
                        )
                        fresh = cipher.encrypt_config(
                            opened.config, org_id=row.org_id, connector_type=row.connector_type
                        )
                    except EncryptionError:
                        report.failed.append(row.id)
                        continue
                    if dry_run:
                        _count(report, opened, dry_run=True)
                        continue
                    result = conn.execute(
                        update(row_type)
                        .where(row_type.id == row.id, row_type.config_encrypted == blob)
                        .values(config_encrypted=fresh)
                    )
                    if result.rowcount == 1:
                        _count(report, opened, dry_run=False)
                    else:
                        report.changed_concurrently.append(row.id)
    finally:
        engine.dispose()
    return report


def _count(report: RewrapReport, opened: OpenedConfig, *, dry_run: bool) -> None:
    """Count one rewritten (or, dry run, rewritable) row as bound or rewrapped."""
    if opened.bound:
        if dry_run:
            report.would_rewrap += 1
        else:
            report.rewrapped += 1
    elif dry_run:
        report.would_bind += 1
    else:
        report.bound += 1
