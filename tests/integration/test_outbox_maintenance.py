"""``orderflow outbox status|prune`` on a real PostgreSQL: only old records of sent events go."""

from __future__ import annotations

import io
import json
import os
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from adapters.postgres.outbox_maintenance import outbox_status, prune_published
from adapters.postgres.outbox_relay import MARK_PUBLISHED_SQL
from domain.model import DraftOrder, OrderLine
from entrypoints import bootstrap
from entrypoints.cli import EXIT_OK, main
from producer.approval import approve_draft_order

pytestmark = pytest.mark.integration


@pytest.fixture
def outbox(engine: Engine, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """Five events: two published 10 days ago, one just now, two unpublished (one old)."""
    monkeypatch.setenv("DATABASE_URL", migrated_db_url)
    monkeypatch.setenv("ENCRYPTION_MASTER_KEY", os.urandom(32).hex())
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE draft_order, outbox_event, outbox_published"))
    org = uuid.uuid4()
    uow = bootstrap.sql_unit_of_work(database_url=migrated_db_url)
    for n in range(5):
        order = DraftOrder(
            id=uuid.uuid4(),
            org_id=org,
            order_number=f"PR-{n}",
            customer_code="C-1",
            lines=(OrderLine(1, "P-1", Decimal("1"), Decimal("1.00")),),
        )
        approve_draft_order(uow, org, order)
    with engine.begin() as conn:
        ids = conn.execute(text("SELECT id FROM outbox_event ORDER BY id")).scalars().all()
        old = "now() - interval '10 days'"
        # Published as the relay marks: its own statement moves them to outbox_published.
        conn.exec_driver_sql(MARK_PUBLISHED_SQL, (list(ids[:3]),))
        conn.execute(
            text(f"UPDATE outbox_published SET published_at = {old} WHERE id = ANY(:ids)"),
            {"ids": ids[:2]},
        )
        conn.execute(
            text(f"UPDATE outbox_event SET created_at = {old} WHERE id = :id"), {"id": ids[3]}
        )
    return engine


def cli(*argv: str) -> tuple[int, dict[str, object]]:
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, json.loads(out.getvalue())


def remaining_ids(engine: Engine) -> int:
    """Events still waiting plus records of published ones."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM outbox_event)"
                    " + (SELECT count(*) FROM outbox_published)"
                )
            ).scalar_one()
        )


def test_status_reports_backlog_and_kept_rows(outbox: Engine) -> None:
    status, shown = cli("outbox", "status")
    assert status == EXIT_OK
    assert shown["unpublished"] == 2
    assert shown["published_kept"] == 3
    assert shown["oldest_unpublished_at"] is not None
    assert outbox_status(outbox).oldest_unpublished_at is not None


def test_dry_run_counts_and_deletes_nothing(outbox: Engine) -> None:
    assert cli("outbox", "prune", "--older-than", "7d", "--dry-run") == (
        EXIT_OK,
        {"would_delete": 2},
    )
    assert remaining_ids(outbox) == 5


def test_published_events_leave_the_outbox_and_are_recorded(outbox: Engine) -> None:
    with outbox.connect() as conn:
        waiting = conn.execute(text("SELECT count(*) FROM outbox_event")).scalar_one()
        recorded = conn.execute(
            text("SELECT count(*) FROM outbox_published WHERE event_type = 'PushRequested'")
        ).scalar_one()
    assert (waiting, recorded) == (2, 3)


def test_prune_deletes_only_rows_published_before_the_retention(outbox: Engine) -> None:
    assert cli("outbox", "prune", "--older-than", "7d") == (EXIT_OK, {"deleted": 2})
    status = outbox_status(outbox)
    # The old unpublished row stays, whatever its age: the relay still owes it.
    assert (status.unpublished, status.published) == (2, 1)
    # Small batches reach the same end, one transaction each.
    assert prune_published(outbox, timedelta(0), batch_size=1) == 1
    assert outbox_status(outbox).published == 0


@pytest.mark.parametrize("duration", ["7", "7w", "--1d", "d", "1.5h", "x"])
def test_a_bad_duration_is_a_usage_error(
    outbox: Engine, duration: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["outbox", "prune", f"--older-than={duration}"])
    assert exc.value.code == 2
    assert "invalid duration" in capsys.readouterr().err
    assert remaining_ids(outbox) == 5
