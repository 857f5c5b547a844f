"""``orderflow keys rewrap``: move every stored connector config to the primary master key.

After a key rotation (new ``ENCRYPTION_MASTER_KEY``, the previous one in
``ENCRYPTION_OLD_KEYS``) each ``erp_connection`` row whose blob names another
key id is decrypted and re-encrypted under the primary key with the same
(org_id, connector_type) binding. Rows are walked in id order in batches, one
transaction per batch; a row is only overwritten if its blob is still the one
that was read (a concurrent change wins). Rows already under the primary key
are left alone, so a second run rewraps nothing.

A row that does not decrypt (unknown key, corrupted, wrong binding) is reported
by id only and the other rows still proceed. Nothing here prints or logs a
config, a key or an error text that could carry one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select, update

from adapters.crypto.encryption import ConfigCipher
from adapters.crypto.keys import EncryptionError
from adapters.postgres.engine import make_engine
from adapters.postgres.models import ERPConnection

DEFAULT_BATCH_SIZE = 100


@dataclass
class RewrapReport:
    """What a rewrap run found and did (ids only: never a secret)."""

    dry_run: bool
    scanned: int = 0
    already_primary: int = 0
    rewrapped: int = 0
    #: Rows that would be rewrapped (dry run) or whose blob changed under us (skipped).
    would_rewrap: int = 0
    changed_concurrently: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every row is (or, dry run, could be) under the primary key."""
        return not self.failed and not self.changed_concurrently

    def view(self) -> dict[str, object]:
        """The report as printed by the CLI."""
        return {
            "dry_run": self.dry_run,
            "scanned": self.scanned,
            "already_primary": self.already_primary,
            "rewrapped": self.rewrapped,
            "would_rewrap": self.would_rewrap,
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
    """Rewrap every ``erp_connection`` blob not under ``cipher``'s primary key.

    With ``dry_run`` nothing is written: the report counts what would be
    rewrapped (each such blob is still decrypted, so undecryptable rows show up).
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
                        fresh = cipher.rewrap(
                            blob, org_id=row.org_id, connector_type=row.connector_type
                        )
                    except EncryptionError:
                        report.failed.append(row.id)
                        continue
                    if dry_run:
                        report.would_rewrap += 1
                        continue
                    result = conn.execute(
                        update(row_type)
                        .where(row_type.id == row.id, row_type.config_encrypted == blob)
                        .values(config_encrypted=fresh)
                    )
                    if result.rowcount == 1:
                        report.rewrapped += 1
                    else:
                        report.changed_concurrently.append(row.id)
    finally:
        engine.dispose()
    return report
