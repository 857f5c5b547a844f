"""In-memory fakes of the domain ports, for unit tests (no services, no mocks).

``FakeDatabase`` holds the committed state; each ``FakeUnitOfWork`` block
works on a private copy and publishes it on ``commit()`` only, so a block
that fails or forgets to commit leaves the database untouched, as a real
transaction would. The fakes follow the same contract as the SQL stores
(see ``tests/integration/test_postgres_repositories.py``, which runs one
suite against both).

``FakeConnector`` is driven by a handler function (httpx ``MockTransport``
style): the handler returns an ``ExportResult`` or raises a ``ConnectorError``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from domain.config_schema import ConfigField, ConfigSchema
from domain.model import ConnectionStatus, DraftOrder, DraftOrderStatus, PushStatus
from domain.ports import ERPConnectorPort, ExportResult, TestResult
from domain.records import ConnectionRecord, OutboxEvent, PushLogEntry
from domain.repositories import ApprovalRefused, DuplicateKeyError, UnitOfWork

# -- database and unit of work --------------------------------------------------


@dataclass
class _StoredOrder:
    order: DraftOrder
    created_at: datetime
    updated_at: datetime
    approved_at: datetime | None


@dataclass
class FakeDatabase:
    """The committed state every ``FakeUnitOfWork`` over it shares."""

    connections: dict[uuid.UUID, ConnectionRecord] = field(default_factory=dict)
    push_log: dict[uuid.UUID, PushLogEntry] = field(default_factory=dict)
    draft_orders: dict[uuid.UUID, _StoredOrder] = field(default_factory=dict)
    outbox: list[OutboxEvent] = field(default_factory=list)
    next_outbox_id: int = 1
    commits: int = 0

    def snapshot(self) -> FakeDatabase:
        """A copy whose dicts can change without touching this one (records are immutable)."""
        return FakeDatabase(
            connections=dict(self.connections),
            push_log=dict(self.push_log),
            draft_orders={k: replace(v) for k, v in self.draft_orders.items()},
            outbox=list(self.outbox),
            next_outbox_id=self.next_outbox_id,
            commits=self.commits,
        )


#: The types the fake store accepts by default: those of the built-in connectors.
BUILTIN_TYPES = frozenset({"MOCK", "DROPZONE_JSON_V1", "TRYTON"})


class FakeConnectionStore:
    """``ConnectionStore`` over a ``FakeDatabase``.

    ``known_types`` plays the registry's registered types (the SQL store asks the
    registry through the ORM model). A row of another type, as an old database may
    hold, is put into ``FakeDatabase.connections`` directly.
    """

    def __init__(self, db: FakeDatabase, *, known_types: frozenset[str] = BUILTIN_TYPES) -> None:
        self._db = db
        self._known = known_types

    def get(self, connection_id: uuid.UUID) -> ConnectionRecord | None:
        return self._db.connections.get(connection_id)

    def get_active(self, org_id: uuid.UUID) -> ConnectionRecord | None:
        return next(
            (c for c in self._db.connections.values() if c.org_id == org_id and c.is_active),
            None,
        )

    def add(self, record: ConnectionRecord) -> ConnectionRecord:
        from domain.model import check_connector_type

        check_connector_type(record.connector_type, self._known)
        if record.id in self._db.connections:
            raise DuplicateKeyError(f"ERP connection {record.id} exists")
        if record.is_active and self.get_active(record.org_id) is not None:
            raise DuplicateKeyError(
                f"Organisation {record.org_id} already has an active ERP connection",
                constraint="idx_erp_connection_active_org",
            )
        self._db.connections[record.id] = record
        return record

    def disable(self, connection_id: uuid.UUID, *, now: datetime) -> ConnectionRecord | None:
        record = self._db.connections.get(connection_id)
        if record is None:
            return None
        record = replace(record, status=ConnectionStatus.DISABLED, updated_at=now)
        self._db.connections[connection_id] = record
        return record

    def mark_tested(self, connection_id: uuid.UUID, *, at: datetime) -> None:
        record = self._db.connections[connection_id]
        self._db.connections[connection_id] = replace(record, last_test_at=at, updated_at=at)

    def list(self, org_id: uuid.UUID | None = None) -> Sequence[ConnectionRecord]:
        return [c for c in self._db.connections.values() if org_id in (None, c.org_id)]


class FakePushLogStore:
    """``PushLogStore`` over a ``FakeDatabase``."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def get(self, entry_id: uuid.UUID) -> PushLogEntry | None:
        return self._db.push_log.get(entry_id)

    def find(self, idempotency_key: str) -> PushLogEntry | None:
        return next(
            (e for e in self._db.push_log.values() if e.idempotency_key == idempotency_key), None
        )

    def find_success(self, org_id: uuid.UUID, draft_order_id: uuid.UUID) -> PushLogEntry | None:
        entries = self.list_for_order(org_id, draft_order_id)
        return next((e for e in entries if e.status is PushStatus.SUCCESS), None)

    def list_for_order(
        self, org_id: uuid.UUID, draft_order_id: uuid.UUID
    ) -> Sequence[PushLogEntry]:
        entries = [
            e
            for e in self._db.push_log.values()
            if e.org_id == org_id and e.draft_order_id == draft_order_id
        ]
        return sorted(entries, key=lambda e: (e.push_round, e.attempt))

    def claim(self, entry: PushLogEntry) -> PushLogEntry | None:
        if self.find(entry.idempotency_key) is not None:
            return None
        self._db.push_log[entry.id] = entry
        return entry

    def take_over(
        self,
        idempotency_key: str,
        *,
        now: datetime,
        lease_expires_at: datetime,
        connector_type: str | None = None,
    ) -> PushLogEntry | None:
        entry = self.find(idempotency_key)
        if entry is None or not entry.lease_expired(now):
            return None
        entry = replace(
            entry,
            lease_expires_at=lease_expires_at,
            updated_at=now,
            connector_type=connector_type or entry.connector_type,
        )
        self._db.push_log[entry.id] = entry
        return entry

    def update_outcome(
        self,
        entry_id: uuid.UUID,
        *,
        status: PushStatus,
        now: datetime,
        response_json: dict[str, Any] | None = None,
        error_message: str | None = None,
        latency_ms: int | None = None,
    ) -> PushLogEntry | None:
        entry = self._db.push_log.get(entry_id)
        if entry is None or entry.status is not PushStatus.PENDING:
            return None
        # Round-trip through JSON like JSONB does, so a non-JSON value fails here too.
        entry = replace(
            entry,
            status=status,
            response_json=None if response_json is None else json.loads(json.dumps(response_json)),
            error_message=error_message,
            latency_ms=latency_ms,
            lease_expires_at=None,
            updated_at=now,
        )
        self._db.push_log[entry_id] = entry
        return entry


class FakeDraftOrderStore:
    """``DraftOrderStore`` over a ``FakeDatabase``."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def get(
        self, org_id: uuid.UUID, order_id: uuid.UUID, *, for_update: bool = False
    ) -> DraftOrder | None:
        stored = self._db.draft_orders.get(order_id)
        return stored.order if stored is not None and stored.order.org_id == org_id else None

    def get_by_number(self, org_id: uuid.UUID, order_number: str) -> DraftOrder | None:
        return next(
            (
                s.order
                for s in self._db.draft_orders.values()
                if s.order.org_id == org_id and s.order.order_number == order_number
            ),
            None,
        )

    def approved_at(self, order_id: uuid.UUID) -> datetime | None:
        """Test helper: when the order was approved."""
        stored = self._db.draft_orders.get(order_id)
        return None if stored is None else stored.approved_at

    def add(self, order: DraftOrder, *, now: datetime) -> None:
        if order.id in self._db.draft_orders:
            raise DuplicateKeyError(f"Draft order {order.id} already exists")
        self._check_number(order)
        approved = now if order.status is DraftOrderStatus.APPROVED else None
        self._db.draft_orders[order.id] = _StoredOrder(order, now, now, approved)

    def update(self, order: DraftOrder, *, now: datetime) -> None:
        stored = self._db.draft_orders.get(order.id)
        if stored is None or stored.order.org_id != order.org_id:
            raise KeyError(f"No draft order {order.id} in organisation {order.org_id}")
        self._check_number(order)
        approved = (
            (stored.approved_at or now) if order.status is DraftOrderStatus.APPROVED else None
        )
        self._db.draft_orders[order.id] = _StoredOrder(order, stored.created_at, now, approved)

    def _check_number(self, order: DraftOrder) -> None:
        other = self.get_by_number(order.org_id, order.order_number)
        if other is not None and other.id != order.id:
            raise DuplicateKeyError(
                f"Order number {order.order_number!r} is already used "
                f"in organisation {order.org_id}",
                constraint="uq_draft_order_org_order_number",
            )


class FakeOutboxStore:
    """``OutboxStore`` over a ``FakeDatabase``; ``fail_with`` makes ``add`` raise."""

    def __init__(self, db: FakeDatabase, fail_with: BaseException | None = None) -> None:
        self._db = db
        self.fail_with = fail_with

    def add(self, event: OutboxEvent) -> OutboxEvent:
        if self.fail_with is not None:
            raise self.fail_with
        if any(e.event_id == event.event_id for e in self._db.outbox):
            raise DuplicateKeyError(f"Outbox event {event.event_id} exists")
        json.dumps(event.payload)  # the payload must be JSON-ready, as JSONB requires
        stored = event.stored_as(self._db.next_outbox_id)
        self._db.next_outbox_id += 1
        self._db.outbox.append(stored)
        return stored

    def get(self, event_id: uuid.UUID) -> OutboxEvent | None:
        return next((e for e in self._db.outbox if e.event_id == event_id), None)

    def list_unpublished(self, limit: int = 100) -> Sequence[OutboxEvent]:
        # As in PostgreSQL: the relay removes what it sent, so every row waits.
        return list(self._db.outbox[:limit])


class FakeApprovalWriter:
    """``ApprovalWriter`` over the fake's stores: the same refusals as the SQL statement."""

    def __init__(self, orders: FakeDraftOrderStore, outbox: FakeOutboxStore) -> None:
        self._orders = orders
        self._outbox = outbox

    def write(
        self, order: DraftOrder, event: OutboxEvent, *, now: datetime
    ) -> OutboxEvent | ApprovalRefused:
        current = self._orders.get(order.org_id, order.id)
        if current is not None and current.status is DraftOrderStatus.APPROVED:
            return ApprovalRefused("already_approved")
        namesake = self._orders.get_by_number(order.org_id, order.order_number)
        if namesake is not None and namesake.id != order.id:
            return ApprovalRefused("order_number_taken", namesake.id)
        if current is None:
            try:
                self._orders.add(order, now=now)
            except DuplicateKeyError as exc:  # the id is another organisation's
                return ApprovalRefused("id_taken", constraint=exc.constraint)
        else:
            self._orders.update(order, now=now)
        return self._outbox.add(event)


class FakeUnitOfWork(UnitOfWork):
    """A unit of work over a ``FakeDatabase`` with real commit/rollback semantics.

    ``outbox_fails_with`` makes every ``outbox.add`` raise (to test atomicity).
    Interleaving two units over one database is not modelled: the last
    commit wins wholesale.
    """

    connections: FakeConnectionStore
    push_log: FakePushLogStore
    draft_orders: FakeDraftOrderStore
    outbox: FakeOutboxStore

    def __init__(
        self,
        db: FakeDatabase | None = None,
        *,
        known_types: frozenset[str] = BUILTIN_TYPES,
        outbox_fails_with: BaseException | None = None,
    ) -> None:
        self.db = db if db is not None else FakeDatabase()
        self._known = known_types
        self.outbox_fails_with = outbox_fails_with
        self.committed = 0
        self.rolled_back = 0
        self._begin()

    def _begin(self) -> None:
        self._work = self.db.snapshot()
        self.connections = FakeConnectionStore(self._work, known_types=self._known)
        self.push_log = FakePushLogStore(self._work)
        self.draft_orders = FakeDraftOrderStore(self._work)
        self.outbox = FakeOutboxStore(self._work, self.outbox_fails_with)
        self.approvals = FakeApprovalWriter(self.draft_orders, self.outbox)

    def __enter__(self) -> FakeUnitOfWork:
        self._begin()
        return self

    def commit(self) -> None:
        work = self._work
        self.db.connections = dict(work.connections)
        self.db.push_log = dict(work.push_log)
        self.db.draft_orders = dict(work.draft_orders)
        self.db.outbox = list(work.outbox)
        self.db.next_outbox_id = work.next_outbox_id
        self.db.commits += 1
        self.committed += 1
        self._begin()

    def rollback(self) -> None:
        self.rolled_back += 1
        self._begin()


# -- clock ----------------------------------------------------------------------


class FakeClock:
    """A clock that only moves when told to; ``sleep`` records and advances it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
        self.sleeps: list[float] = []
        self.ticks = 0.0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.ticks += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def monotonic(self) -> float:
        return self.ticks


# -- crypto and connectors ------------------------------------------------------


class FakeEncryptionError(Exception):
    """Raised by ``FakeCipher`` when the associated data does not match."""


class FakeCipher:
    """Reversible stand-in for ``ConfigCipher``: binds the blob to (org, type) like AES-GCM AD.

    Not encryption: it only lets unit tests run without a master key.
    """

    PREFIX = b"fake-cipher:"

    def encrypt_config(
        self, config: Mapping[str, Any], *, org_id: uuid.UUID, connector_type: str
    ) -> bytes:
        body = json.dumps({"ad": [str(org_id), connector_type], "config": dict(config)})
        return self.PREFIX + body.encode()[::-1]

    def decrypt_config(
        self, blob: bytes, /, *, org_id: uuid.UUID, connector_type: str
    ) -> dict[str, Any]:
        if not blob.startswith(self.PREFIX):
            raise FakeEncryptionError("authentication tag verification failed")
        body = json.loads(blob[len(self.PREFIX) :][::-1])
        if body["ad"] != [str(org_id), connector_type]:
            raise FakeEncryptionError("authentication tag verification failed")
        config: dict[str, Any] = body["config"]
        return config


ExportHandler = Callable[[DraftOrder, Mapping[str, Any]], ExportResult]


def succeed(order: DraftOrder, config: Mapping[str, Any]) -> ExportResult:
    """Handler: every export succeeds."""
    return ExportResult(
        success=True,
        export_id=order.id,
        storage_key=f"fake/{order.id}.json",
        connector_metadata={"erp_order_id": f"ERP-{order.order_number}"},
    )


class FakeConnector(ERPConnectorPort):
    """A connector whose ``export`` is the given handler; records every call."""

    connector_type: ClassVar[str] = "MOCK"
    config_schema: ClassVar[ConfigSchema] = ConfigSchema(
        fields=(
            ConfigField("host"),
            ConfigField("password", secret=True),
        ),
        allow_unknown=True,
    )

    def __init__(self, handler: ExportHandler = succeed) -> None:
        self.handler = handler
        self.calls: list[tuple[DraftOrder, Mapping[str, Any]]] = []

    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        self.calls.append((draft_order, config))
        return self.handler(draft_order, config)

    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        return TestResult(success=True)


class FakeRegistry:
    """``ConnectorRegistry`` stand-in returning the given connector instances."""

    def __init__(self, connectors: Mapping[str, ERPConnectorPort]) -> None:
        self._connectors = dict(connectors)

    def get(self, connector_type: str, /) -> ERPConnectorPort:
        try:
            return self._connectors[connector_type]
        except KeyError:
            raise ValueError(f"Unknown connector type: {connector_type!r}") from None

    def known_types(self) -> frozenset[str]:
        return frozenset(self._connectors)
