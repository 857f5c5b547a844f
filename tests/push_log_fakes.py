"""``PushLogWriter`` in memory, for unit tests: the SQL writer's rules over a ``FakeUnitOfWork``.

Each call is one transaction of the fake unit of work (committed, or rolled
back whole if a store raises), like one statement of
``adapters.postgres.push_log_sql.PushLogBatchWriter``; the contract suite
``tests/contract/push_log_writer_contract.py`` runs against both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from domain.model import PushStatus
from domain.push_writes import ClaimGrant, ClaimRequest, OutcomeWrite
from domain.records import OutboxEvent, PushLogEntry
from tests.fakes import FakeUnitOfWork


def _has_history(uow: FakeUnitOfWork, entry: PushLogEntry) -> bool:
    """The quick claim's refusal rule (``ClaimRequest.fresh_only``)."""
    history = uow.push_log.list_for_order(entry.org_id, entry.draft_order_id)
    if entry.attempt == 0:
        return bool(history)
    return any(h.status is PushStatus.SUCCESS or h.push_round > entry.push_round for h in history)


class FakePushLogWriter:
    """The push log's writer over ``uow``'s stores (see the module docstring).

    ``encoder`` encodes the value of an event written without one, as the SQL
    writer's does. ``calls`` counts the statements a real writer would run.
    """

    def __init__(
        self,
        uow: FakeUnitOfWork,
        *,
        encoder: Callable[[OutboxEvent], bytes | None] | None = None,
    ) -> None:
        self.uow = uow
        self._encoder = encoder
        self.calls = 0
        self.closed = False

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[ClaimGrant]:
        self.calls += 1
        grants: list[ClaimGrant] = []
        with self.uow as uow:
            for request in requests:
                entry = request.entry
                if request.fresh_only and _has_history(uow, entry):
                    grants.append(ClaimGrant(False))
                    continue
                connection = uow.connections.get_active(entry.org_id)
                connector_type = connection.connector_type if connection is not None else None
                if uow.push_log.claim(replace(entry, connector_type=connector_type)) is None:
                    grants.append(ClaimGrant(False))
                    continue
                grants.append(ClaimGrant(True, connection))
            uow.commit()
        return grants

    def record_many(self, writes: Sequence[OutcomeWrite]) -> list[bool]:
        self.calls += 1
        recorded: list[bool] = []
        with self.uow as uow:
            for write in writes:
                row = uow.push_log.update_outcome(
                    write.entry_id,
                    status=write.status,
                    now=write.now,
                    response_json=write.response_json,
                    error_message=write.error_message,
                    latency_ms=write.latency_ms,
                )
                recorded.append(row is not None)
                if row is None:
                    continue
                for event in write.events:
                    encoder = self._encoder
                    if event.value is None and encoder is not None:
                        event = replace(event, value=encoder(event))
                    uow.outbox.add(event)
            uow.commit()
        return recorded

    def close(self) -> None:
        self.closed = True
