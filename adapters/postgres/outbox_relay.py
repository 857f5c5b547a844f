"""The outbox relay's SQL side: leader lock, batched claim, completion, LISTEN/NOTIFY.

One dedicated psycopg2 connection in autocommit mode does everything the relay
needs from PostgreSQL:

* **Leadership**: a session-level advisory lock (``pg_try_advisory_lock``) on
  this connection. Only the holder publishes, which keeps events of one draft
  order in ``id`` order even with several relay processes. PostgreSQL releases
  the lock when the session ends, so a SIGKILLed leader is replaced by a
  standby at its next attempt. Claims and completions run on the *same*
  connection: a statement that succeeds proves the session (and the lock) is
  still alive.
* **Wake-up**: ``LISTEN outbox_event`` (the insert trigger NOTIFYs at commit);
  :meth:`PgOutboxRelayStore.wait_for_events` ``select()`` on the socket, so an
  idle relay costs no query until its fallback poll.
* **Claim**: ``id > cursor ORDER BY id LIMIT n`` through the primary key (every
  ``outbox_event`` row is unpublished); a cursor of 0 re-scans every waiting row
  (stragglers), still cheaply. It returns only what producing needs (id, type,
  key as text, stored value, headers) as plain tuples.
* **Completion**: one statement deletes the sent rows and records them in the
  narrow ``outbox_published`` (revision 0004: rewriting a ~1.9 KB row to mark
  it cost 9x the WAL), called by the relay only with ids the broker acknowledged.

Connection failures become :class:`OutboxUnavailable` (the relay reconnects
with backoff); the connection is then dropped, releasing the lock.
:attr:`PgOutboxRelayStore.statements` counts the statements sent, so the
idle cost can be checked.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import logging
import select
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from sqlalchemy import make_url

from adapters.postgres.models import OUTBOX_NOTIFY_CHANNEL
from domain.records import OutboxEvent
from domain.repositories import RepositoryError

if TYPE_CHECKING:
    from domain.outbox_ports import ClaimedRow

_log = logging.getLogger(__name__)


#: Advisory lock key of the relay leader ("OFRELAY1" as a signed 64-bit integer).
#: Every relay process of one database must use the same key.
RELAY_LOCK_KEY: Final = int.from_bytes(b"OFRELAY1", "big", signed=True)

#: ``application_name`` of the relay's session (how benchmarks find it server-side).
RELAY_APPLICATION_NAME: Final = "orderflow-relay"

# Only what producing needs, in the relay's ClaimedRow shape, so the driver's C code
# builds the rows the relay iterates: the aggregate id as text (the Kafka key; no UUID
# object per row), the stored value (bytes, see _bytea) and the headers (one JSON parse).
# The trailing NULL is the ``event`` slot, filled by a second query only for rows
# written without a value (the relay encodes those itself).
_CLAIM_SQL: Final = (
    "SELECT id, event_type, aggregate_id::text, value, headers, NULL"
    " FROM outbox_event"
    " WHERE id > %s"
    " ORDER BY id LIMIT %s"
)
# The full rows of claimed events that have no stored value (rare: older writers).
_EVENTS_SQL: Final = (
    "SELECT id, event_id, aggregate_type, aggregate_id, org_id, event_type,"
    " payload, headers, created_at, value"
    " FROM outbox_event WHERE id = ANY(%s::bigint[])"
)
# Deletes the sent rows and records them in outbox_published, in one statement. A
# re-sent duplicate finds its row gone: nothing is recorded twice, and the record
# keeps the time of its first publish. An id already recorded means the sequence
# was reset (TRUNCATE ... RESTART IDENTITY): the newer event replaces the record,
# since a relay must never stall on its bookkeeping.
# Public: the benchmark's textbook relay marks with the same statement, one id at a time.
MARK_PUBLISHED_SQL: Final = (
    "WITH sent AS (DELETE FROM outbox_event WHERE id = ANY(%s::bigint[])"
    " RETURNING id, event_id, aggregate_type, aggregate_id, org_id, event_type, created_at)"
    " INSERT INTO outbox_published"
    " (id, event_id, aggregate_type, aggregate_id, org_id, event_type, created_at)"
    " SELECT * FROM sent"
    " ON CONFLICT (id) DO UPDATE SET"
    " (event_id, aggregate_type, aggregate_id, org_id, event_type, created_at, published_at)"
    " = (EXCLUDED.event_id, EXCLUDED.aggregate_type, EXCLUDED.aggregate_id, EXCLUDED.org_id,"
    " EXCLUDED.event_type, EXCLUDED.created_at, now())"
)
# The ids go as one array literal: adapting a list of ints costs the driver ~1 µs per id.


# One parser, declared by the project: an optional faster one that is present on some
# machines and not others made the type check depend on the machine. Its C scanner is
# called directly: PostgreSQL's jsonb output is always one valid JSON document, so
# json.loads' checks (BOM, surrounding whitespace, trailing data) are pure overhead,
# about half the cost of parsing a row's headers.
# (scan_once is set in JSONDecoder.__init__ and undeclared in typeshed.)
_DECODER: Final[Any] = json.JSONDecoder()
_SCAN_JSON: Final[Callable[[str, int], tuple[Any, int]]] = _DECODER.scan_once
_JSONB_OID: Final = 3802

_BYTEA_OID: Final = 17


def _jsonb(value: str | bytes | None, _cursor: psycopg2.extensions.cursor) -> Any:
    """Cast a ``jsonb`` column with the JSON scanner (see :data:`_SCAN_JSON`)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else value.decode()
    return _SCAN_JSON(text, 0)[0]


def _bytea(value: str | bytes | None, cursor: psycopg2.extensions.cursor) -> bytes | None:
    """Cast a ``bytea`` column straight to ``bytes`` (the session's output is ``hex``).

    The driver's own cast returns a memoryview, which the Kafka client does not
    take; this skips that detour and its copy.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if value.startswith("\\x"):
        return binascii.a2b_hex(value[2:])
    # The escape format: a server (or pooler) that ignored the session option.
    return bytes(psycopg2.BINARY(value, cursor))


class OutboxUnavailable(RepositoryError):  # noqa: N818 - reads as a state, like TimeoutError
    """PostgreSQL could not be reached or the relay's session died; reconnect later.

    The session (and with it the leader lock) is gone when this is raised.
    """


def psycopg2_dsn(database_url: str) -> dict[str, Any]:
    """Turn a SQLAlchemy URL (``postgresql+psycopg2://u:p@h:port/db?x=y``) into connect kwargs."""
    url = make_url(database_url)
    kwargs: dict[str, Any] = url.translate_connect_args(username="user", database="dbname")
    for key, value in url.query.items():
        kwargs[key] = value if isinstance(value, str) else value[-1]
    return kwargs


def session_dsn(
    database_url: str, *, connect_timeout_s: int = 5, application_name: str | None = None
) -> dict[str, Any]:
    """Connect kwargs of a long-lived dedicated session (relay, push-log writers).

    A bounded connect, and TCP keepalives: a server that vanished without a FIN
    is noticed in ~25 s even while the session only waits.
    """
    dsn = psycopg2_dsn(database_url)
    dsn.setdefault("connect_timeout", connect_timeout_s)
    if application_name is not None:
        dsn.setdefault("application_name", application_name)
    dsn.setdefault("keepalives", 1)
    dsn.setdefault("keepalives_idle", 10)
    dsn.setdefault("keepalives_interval", 5)
    dsn.setdefault("keepalives_count", 3)
    return dsn


class PgOutboxRelayStore:
    """The relay's PostgreSQL session (implements ``domain.outbox_ports.OutboxSource``).

    Connects lazily (on the first call that needs the database). Not thread-safe:
    one relay loop owns it. ``lock_key`` lets tests run independent relay groups
    against one database.
    """

    def __init__(
        self,
        database_url: str,
        *,
        lock_key: int = RELAY_LOCK_KEY,
        connect_timeout_s: int = 5,
        application_name: str = RELAY_APPLICATION_NAME,
        connect: Callable[..., Any] | None = None,
    ) -> None:
        self._dsn = session_dsn(
            database_url, connect_timeout_s=connect_timeout_s, application_name=application_name
        )
        # _bytea relies on the hex output format (the default; pinned here, no statement).
        options = self._dsn.get("options", "")
        self._dsn["options"] = f"{options} -c bytea_output=hex".strip()
        self._lock_key = lock_key
        self._connect = connect or psycopg2.connect
        self._conn: Any = None
        self._leader = False
        self._listening = False
        self.statements = 0
        """Statements sent to the server so far (claims, completions, lock attempts, ...)."""

    # --- connection -----------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            try:
                conn = self._connect(**self._dsn)
            except psycopg2.Error as exc:
                raise OutboxUnavailable(f"Cannot connect to PostgreSQL: {_short(exc)}") from exc
            conn.autocommit = True
            # Casts for the claim's hot columns (jsonb headers, bytea value); uuid
            # columns (the rare full-event query) to UUIDs.
            ext = psycopg2.extensions
            ext.register_type(ext.new_type((_JSONB_OID,), "RELAY_JSONB", _jsonb), conn)
            ext.register_type(ext.new_type((_BYTEA_OID,), "RELAY_BYTEA", _bytea), conn)
            psycopg2.extras.register_uuid(conn_or_curs=conn)  # type: ignore[no-untyped-call]
            self._conn = conn
            self._leader = False
            self._listening = False
        return self._conn

    def _execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """Run one statement; return the cursor. Connection errors -> OutboxUnavailable."""
        conn = self._connection()
        try:
            cursor = conn.cursor()
            self.statements += 1
            cursor.execute(sql, params)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            self._drop()
            raise OutboxUnavailable(f"PostgreSQL session lost: {_short(exc)}") from exc
        except psycopg2.Error as exc:
            # E.g. admin_shutdown arrives as another class on some servers; a
            # closed connection means the session is gone whatever the class.
            if conn.closed:
                self._drop()
                raise OutboxUnavailable(f"PostgreSQL session lost: {_short(exc)}") from exc
            raise
        return cursor

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._leader = False
        self._listening = False
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg2.Error):  # closing a broken socket
                conn.close()

    @property
    def is_leader(self) -> bool:
        """True while this session holds the leader lock (as far as it knows)."""
        return self._leader and self._conn is not None and not self._conn.closed

    # --- leadership -----------------------------------------------------------------------
    def try_acquire_leadership(self) -> bool:
        """Take the leader lock if free; on success also LISTEN for new events.

        One cheap statement per call while another process leads. Returns True
        if this session holds the lock (it may already have held it).
        """
        if self.is_leader:
            return True
        row = self._execute("SELECT pg_try_advisory_lock(%s)", (self._lock_key,)).fetchone()
        if not row or not row[0]:
            return False
        self._leader = True
        if not self._listening:
            # Quoted identifier: the channel name is a constant of ours.
            self._execute(f'LISTEN "{OUTBOX_NOTIFY_CHANNEL}"')
            self._listening = True
        return True

    def release_leadership(self) -> None:
        """Give the lock back (the session stays open); a lost session has no lock anyway."""
        if not self.is_leader:
            return
        try:
            self._execute(f'UNLISTEN "{OUTBOX_NOTIFY_CHANNEL}"')
            self._execute("SELECT pg_advisory_unlock(%s)", (self._lock_key,))
        except OutboxUnavailable:
            pass  # the session died, so PostgreSQL released the lock already
        self._leader = False
        self._listening = False

    # --- events ---------------------------------------------------------------------------
    def claim(self, after_id: int, limit: int) -> list[ClaimedRow]:
        """Return up to ``limit`` unpublished rows with ``id > after_id``, in ``id`` order.

        Rows in the relay's :data:`~domain.outbox_ports.ClaimedRow` shape; a row without a
        stored value also carries its full event (one more query for those only).
        """
        if not self.is_leader:
            # Never claim on a session without the lock (e.g. a fresh one opened
            # after the leader's session died): another relay may be publishing.
            raise OutboxUnavailable("This session does not hold the relay leader lock")
        conn = self._connection()
        # Notifications received before this statement are covered by its snapshot;
        # the ones arriving during or after it stay queued and wake the next wait.
        conn.notifies.clear()
        rows: list[ClaimedRow] = self._execute(_CLAIM_SQL, (after_id, limit)).fetchall()
        missing = [row[0] for row in rows if row[3] is None]
        if missing:
            events = {
                event.id: event
                for event in map(_event, self._execute(_EVENTS_SQL, (missing,)).fetchall())
            }
            rows = [row if row[3] is not None else (*row[:5], events.get(row[0])) for row in rows]
        return rows

    def mark_published(self, ids: Sequence[int]) -> int:
        """Move these (broker-acknowledged) events to ``outbox_published``; return how many."""
        if not ids:
            return 0
        cursor = self._execute(MARK_PUBLISHED_SQL, ("{" + ",".join(map(str, ids)) + "}",))
        return int(cursor.rowcount)

    def wait_for_events(self, timeout: float, wake_fd: int | None = None) -> bool:
        """Wait up to ``timeout`` s for a NOTIFY; True if one came (no query is sent).

        Returns early (False) when ``wake_fd`` becomes readable (the relay's
        stop signal); the caller drains that fd.
        """
        if not self._listening or self._conn is None or self._conn.closed:
            # Only the leader's LISTENing session can be woken; a lost one must be
            # noticed now, not after a silent wait on a fresh session.
            raise OutboxUnavailable("This session is not listening for outbox events")
        conn = self._conn
        if conn.notifies:
            conn.notifies.clear()
            return True
        watched: list[Any] = [conn] if wake_fd is None else [conn, wake_fd]
        try:
            readable, _, _ = select.select(watched, [], [], max(timeout, 0.0))
            if conn in readable:
                conn.poll()
        except (psycopg2.OperationalError, psycopg2.InterfaceError, OSError) as exc:
            self._drop()
            raise OutboxUnavailable(f"PostgreSQL session lost: {_short(exc)}") from exc
        if conn.notifies:
            conn.notifies.clear()
            return True
        return False

    def close(self) -> None:
        """Release the lock (if held) and close the session."""
        self.release_leadership()
        self._drop()


def _event(row: tuple[Any, ...]) -> OutboxEvent:
    (
        event_id_seq,
        event_id,
        aggregate_type,
        aggregate_id,
        org_id,
        event_type,
        payload,
        headers,
        created_at,
        value,
    ) = row
    created: datetime = created_at
    return OutboxEvent(
        event_id=event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(str(event_id)),
        aggregate_type=aggregate_type,
        aggregate_id=(
            aggregate_id if isinstance(aggregate_id, uuid.UUID) else uuid.UUID(str(aggregate_id))
        ),
        org_id=org_id if isinstance(org_id, uuid.UUID) else uuid.UUID(str(org_id)),
        event_type=event_type,
        payload=payload if payload is not None else {},
        # Not a mapping: the relay refuses the row (it sends the claimed headers).
        headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {},
        created_at=created,
        id=int(event_id_seq),
        value=None if value is None else bytes(value),
    )


def _short(exc: BaseException) -> str:
    """First line of a driver error (the rest repeats the statement, never needed here)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
