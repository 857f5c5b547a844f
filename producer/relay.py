"""The outbox relay: publishes committed ``outbox_event`` rows to Kafka, in order, at least once.

How it works (DESIGN.md §1, issue 3 item 2):

* **One leader.** Several relay processes may run; only the holder of the
  source's leader lock publishes, so events of one draft order reach Kafka in
  ``id`` order. The others stand by and retry the lock every
  ``standby_retry_s`` (one cheap query per attempt). A killed leader's lock dies
  with its database session and a standby takes over.
* **Pipelined, bounded.** The leader claims batches of ``batch_size`` rows past a
  cursor and produces them asynchronously; it claims the next batch while
  earlier ones are still in flight, up to ``max_in_flight`` unacknowledged
  events. Memory is bounded by that window, never by the backlog.
* **Lean hot path.** The source returns each claimed row as a plain tuple of
  what producing needs (:data:`ClaimedRow`: id, type, key as text, the value the
  writer stored, headers); the relay looks up the topic and hands it to the
  sink, which produces it with no per-message object beyond the client's own.
* **Completion only after the ack.** Delivery reports collect the acknowledged
  ids (plain ints, :class:`Deliveries`); they are marked published in batches.
  A failed delivery is never marked: the relay lets the window drain, then
  starts a new *pass* from the beginning of the unpublished rows, which re-sends
  it (a duplicate is possible, a loss is not; consumers dedupe).
* **Passes and stragglers.** ``id`` comes from a sequence, so a transaction can
  commit a lower id after a higher one was read. Each pass starts at cursor 0 of
  the unpublished rows (the source keeps only those); a new pass starts whenever the window
  is empty and the relay is caught up (every wake-up or idle poll), or after
  ``rescan_interval_s`` under sustained load. Stragglers are therefore
  published within about a second. This cannot break per-key order: approvals
  of one order are serialised by a row lock, so an order's later event is only
  written after its earlier one committed.
* **Wake-up.** When caught up after a pass that found nothing, the leader waits
  for a NOTIFY from the outbox insert trigger, or ``idle_poll_s`` (2 s) at most,
  then polls: an idle relay costs one query per ``idle_poll_s``. A pass that
  published something is followed by a new pass at once (no wait), so a
  straggler whose NOTIFY arrived while the window was busy is not left to the
  fallback poll.
* **Poison events.** An event that cannot be encoded or is refused by the
  producer is logged (id and reason class only) and left unpublished; later
  events of the same aggregate are held back for the rest of the pass, so
  per-key order holds while other keys flow. The next pass retries it.
* **Stop and outages.** :meth:`OutboxRelay.stop` (SIGTERM/SIGINT in
  :func:`main`) stops claiming, flushes the producer for at most
  ``flush_timeout_s``, marks what was acknowledged and releases the lock. A lost
  database session is retried with exponential backoff (in-flight state is
  reset; acknowledged ids are kept and marked after reconnecting). An
  unavailable broker is absorbed by the producer's buffering and retries;
  nothing unacknowledged is ever marked.

Ports (``domain.outbox_ports``): :class:`OutboxSource` (the PostgreSQL side,
``adapters.postgres.outbox_relay``) and :class:`EventSink` (the Kafka side,
``adapters.kafka.event_sink``). The process (``orderflow relay``) is wired in
``entrypoints.relay_wiring`` and run by ``entrypoints.relay_process``.

Size: about 500 lines, kept whole because the engine is one state machine (leader
loop, passes, the in-flight window, marking, reconnects) whose methods share its
state; its settings, counters and helpers live in ``relay_settings`` and
``relay_support``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future

from domain.outbox_ports import (
    ClaimedRow,
    Deliveries,
    EventSink,
    OutboxSource,
    Route,
    SinkBroken,
    SinkRejected,
)
from domain.repositories import RepositoryError
from producer.relay_settings import RelayExit, RelaySettings, RelayStats
from producer.relay_support import Completions, DbThread, Pass, Waker

_log = logging.getLogger("orderflow.relay")


# --- the relay -----------------------------------------------------------------------------


class OutboxRelay:
    """Publishes outbox events through a sink while this process is the leader.

    ``sink_factory`` builds the producer (again after :class:`SinkBroken`).
    ``routes`` maps ``event_type`` to topic and encoder; events of other types
    are refused like undecodable ones. ``source_errors`` are the exceptions
    meaning "the database session is gone, reconnect" (stores raise
    ``RepositoryError`` subclasses for that).
    """

    def __init__(
        self,
        source: OutboxSource,
        sink_factory: Callable[[], EventSink],
        routes: Mapping[str, Route],
        settings: RelaySettings | None = None,
        *,
        source_errors: tuple[type[BaseException], ...] = (RepositoryError,),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._sink_factory = sink_factory
        self._routes = dict(routes)
        #: ``event_type`` -> topic: all the hot path needs for a pre-encoded value.
        self._topics = {name: route.topic for name, route in routes.items()}
        self.settings = settings or RelaySettings()
        self._source_errors = source_errors
        self._clock = clock
        self.stats = RelayStats()
        self._stopping = threading.Event()
        self._waker: Waker | None = None
        self._db: DbThread | None = None
        self._in_flight: set[int] = set()
        self._completions = Completions(source.mark_published, self.stats)
        #: The next batch, claimed ahead on the database thread.
        self._prefetch: Future[Sequence[ClaimedRow]] | None = None
        self._failed = False
        self._pass = Pass()
        self._refused_logged: set[int] = set()
        self._last_progress = 0.0
        self._progress_base = 0

    # --- control ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the relay to stop (safe from signal handlers and other threads)."""
        self._stopping.set()
        waker = self._waker
        if waker is not None:
            waker.wake()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    @property
    def in_flight(self) -> int:
        """Events sent whose delivery report has not arrived."""
        return len(self._in_flight)

    def run(self) -> RelayExit:
        """Run until stopped (or, with ``drain``, until nothing is left); then clean up."""
        settings = self.settings
        self._waker = Waker()
        if self._stopping.is_set():
            self._waker.wake()
        db = self._db = DbThread()
        sink: EventSink | None = None
        backoff = settings.reconnect_initial_s
        standby_logged = False
        try:
            while not self._stopping.is_set():
                try:
                    if sink is None:
                        sink = self._sink_factory()
                    if not db.call(self._source.try_acquire_leadership):
                        if not standby_logged:
                            _log.info("Relay on standby: another relay holds the leader lock")
                            standby_logged = True
                        self._stopping.wait(settings.standby_retry_s)
                        continue
                    standby_logged = False
                    backoff = settings.reconnect_initial_s
                    self.stats.leaderships += 1
                    _log.info("Relay is the leader: publishing outbox events")
                    if self._lead(sink) is RelayExit.DRAINED:
                        return RelayExit.DRAINED
                except self._source_errors as exc:
                    self.stats.reconnects += 1
                    _log.warning(
                        "Outbox database unavailable (%s); retrying in %.1f s", exc, backoff
                    )
                    sink = self._reset_after_source_loss(sink)
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, settings.reconnect_max_s)
                except SinkBroken as exc:
                    _log.error("Kafka producer failed (%s); creating a new one", exc)
                    self._discard_sink(sink)
                    sink = None
            return RelayExit.STOPPED
        finally:
            self._shutdown(sink)

    # --- leading ------------------------------------------------------------------------
    def _lead(self, sink: EventSink) -> RelayExit:
        """Publish while leader; return on stop or (drain mode) when nothing is left."""
        settings = self.settings
        db = self._database()
        source = self._source
        waker = self._waker
        wake_fd = waker.read_fd if waker is not None else None
        self._mark()  # acknowledgements kept from before a reconnect
        self._new_pass()
        want_claim = True
        while not self._stopping.is_set():
            self._collect(sink.poll(0))
            self._log_progress()
            if self._failed or (
                want_claim and self._clock() - self._pass.started >= settings.rescan_interval_s
            ):
                # A new pass re-sends failures and picks up stragglers; it must start
                # from an empty window, or in-flight events would be claimed again.
                if self._in_flight:
                    self._collect(sink.poll(settings.ack_wait_s))
                    continue
                self._mark()
                self._new_pass()
                want_claim = True

            if not want_claim:
                # Caught up with everything committed.
                if self._in_flight:
                    self._collect(sink.poll(settings.caught_up_ack_wait_s))
                    self._mark_if_due()
                    # A NOTIFY means new commits: claim past the cursor (no query sent here).
                    if db.call(source.wait_for_events, 0.0, wake_fd):
                        want_claim = True
                    continue
                self._mark()
                if self._pass.sent == 0:
                    # Every pass starts at cursor 0: one that sent nothing proves the
                    # backlog is empty (refused events aside, which were logged).
                    if settings.drain:
                        return RelayExit.DRAINED
                    # Sleep until a commit NOTIFYs (every outbox insert does, stragglers
                    # included); the timeout is only a safety net (see idle_poll_s).
                    db.call(source.wait_for_events, settings.idle_poll_s, wake_fd)
                    if waker is not None:
                        waker.drain()
                # Window empty: restarting at cursor 0 is free and catches stragglers. A
                # pass that sent something is followed by one more right away: a NOTIFY
                # consumed while its window was busy may have been a straggler's.
                self._new_pass()
                want_claim = True
                continue

            if len(self._in_flight) + settings.batch_size > settings.max_in_flight:
                # Window full: wait for acknowledgements before claiming more.
                self._collect(sink.poll(settings.ack_wait_s))
                self._mark_if_due()
                continue
            self._mark_if_due()
            rows = self._claim()
            if len(rows) < settings.batch_size:
                want_claim = False
            elif len(self._in_flight) + len(rows) + settings.batch_size <= settings.max_in_flight:
                # Claim the next batch on the database thread while this one is
                # produced here.
                self._prefetch = db.submit(source.claim, rows[-1][0], settings.batch_size)
            if rows:
                self._publish(sink, rows)
        return RelayExit.STOPPED

    def _database(self) -> DbThread:
        assert self._db is not None, "run() owns the database thread"
        return self._db

    def _claim(self) -> Sequence[ClaimedRow]:
        """Return the next batch of this pass (prefetched if it was claimed ahead)."""
        future, self._prefetch = self._prefetch, None
        if future is None:
            future = self._database().submit(
                self._source.claim, self._pass.cursor, self.settings.batch_size
            )
        rows = future.result()
        self.stats.claims += 1
        return rows

    def _drop_prefetch(self) -> None:
        """Forget a batch claimed ahead (a new pass claims it again); its errors surface."""
        future, self._prefetch = self._prefetch, None
        if future is not None:
            future.result()

    def _new_pass(self) -> None:
        self._drop_prefetch()
        self._pass = Pass(started=self._clock())
        self._failed = False
        self.stats.passes += 1

    def _publish(self, sink: EventSink, rows: Sequence[ClaimedRow]) -> None:
        """Send a claimed batch (refusing what cannot go, holding back its aggregate).

        The hot path of the relay: per row one dict lookup, one ``send`` and one set
        insertion. Rows without a stored value or a known route take
        :meth:`_publish_other`.
        """
        current = self._pass
        # A sink failure part-way starts a new pass (from cursor 0): nothing is skipped.
        current.cursor = rows[-1][0]
        blocked = current.blocked
        topics = self._topics
        send = sink.send
        track = self._in_flight.add
        sent = 0
        for row in rows:
            token, event_type, key, value, headers, _ = row
            if blocked and key in blocked:
                continue  # an earlier event of this aggregate was refused in this pass
            topic = topics.get(event_type)
            if topic is None or value is None:
                sent += self._publish_other(sink, row)
                continue
            try:
                send(topic, key, value, headers, token)
            except SinkRejected as exc:
                self._refuse(row, f"producer refused it ({exc})")
                continue
            track(token)
            sent += 1
        current.sent += sent
        self.stats.sent += sent

    def _publish_other(self, sink: EventSink, row: ClaimedRow) -> int:
        """Encode (value not stored) or refuse (no route) one row; 1 if it was sent."""
        token, event_type, key, value, headers, event = row
        route = self._routes.get(event_type)
        if route is None:
            self._refuse(row, "no route for this event type")
            return 0
        if value is None:
            try:
                if event is None:
                    raise ValueError("neither a stored value nor the event")
                value = route.encode(event)
            except Exception as exc:  # a bad payload must not stop the other aggregates
                self._refuse(row, f"cannot encode ({type(exc).__name__})")
                return 0
        try:
            sink.send(route.topic, key, value, headers, token)
        except SinkRejected as exc:
            self._refuse(row, f"producer refused it ({exc})")
            return 0
        self._in_flight.add(token)
        return 1

    def _refuse(self, row: ClaimedRow, reason: str) -> None:
        token, event_type, key, _, headers, _ = row
        self._pass.blocked.add(key)
        self.stats.rejected += 1
        # Once at ERROR per event and process: every pass retries it.
        level = logging.DEBUG if token in self._refused_logged else logging.ERROR
        if len(self._refused_logged) > 10_000:
            self._refused_logged.clear()
        self._refused_logged.add(token)
        _log.log(
            level,
            "Outbox event id=%d (%s, event_id=%s) not published: %s; later events of "
            "aggregate %s wait",
            token,
            event_type,
            headers.get("event_id", "?") if isinstance(headers, Mapping) else "?",
            reason,
            key,
        )

    def _collect(self, deliveries: Deliveries) -> None:
        acked = deliveries.acked
        if acked:
            # Even an id no longer tracked (sent before a reset) was delivered:
            # marking it is correct and saves a duplicate.
            self._in_flight.difference_update(acked)
            self._completions.waiting.extend(acked)
            self.stats.acked += len(acked)
        for delivery in deliveries.failed:
            if delivery.token in self._in_flight:
                self._in_flight.discard(delivery.token)
                self._failed = True
                self.stats.failed_deliveries += 1
                _log.warning(
                    "Delivery of outbox event id=%d failed (%s); it will be re-sent",
                    delivery.token,
                    delivery.error,
                )

    def _mark_if_due(self) -> None:
        """Submit the acknowledged ids once a batch of them is waiting; count finished marks."""
        if len(self._completions.waiting) >= self.settings.batch_size:
            self._completions.submit(self._database())
            self._completions.reap(block=False)

    def _mark(self) -> None:
        """Complete every acknowledged event now (waits for earlier completions too)."""
        self._completions.submit(self._database())
        self._completions.reap(block=True)

    def _log_progress(self) -> None:
        now = self._clock()
        if now - self._last_progress < self.settings.progress_interval_s:
            return
        elapsed = now - self._last_progress
        done = self.stats.marked - self._progress_base
        if self._last_progress and done:
            _log.info(
                "Relay progress: %d events published (%.0f/s), %d in flight, total %d",
                done,
                done / elapsed,
                len(self._in_flight),
                self.stats.marked,
            )
        self._last_progress = now
        self._progress_base = self.stats.marked

    # --- failures and shutdown ------------------------------------------------------------
    def _settle_database(self) -> None:
        """Wait for queued database work after a failure; keep unmarked ids for later."""
        future, self._prefetch = self._prefetch, None
        # Errors here are the outage being handled already; failed completions
        # put their ids back on the acknowledged list.
        if future is not None:
            with contextlib.suppress(*self._source_errors):
                future.result()
        with contextlib.suppress(*self._source_errors):
            self._completions.reap(block=True)

    def _reset_after_source_loss(self, sink: EventSink | None) -> EventSink | None:
        """Keep the acknowledgements that can still come; forget the rest of the window."""
        self._settle_database()
        if sink is not None and self._in_flight:
            try:
                self._collect(sink.flush(self.settings.flush_timeout_s))
            except SinkBroken:
                self._discard_sink(sink)
                sink = None
        # Unacknowledged events are re-claimed (and re-sent) by the next leader pass.
        self._in_flight.clear()
        self._failed = False
        return sink

    def _discard_sink(self, sink: EventSink | None) -> None:
        self._in_flight.clear()
        if sink is not None:
            try:
                sink.close()
            except Exception:  # the sink is broken already; closing is best effort
                _log.debug("Closing a broken sink failed", exc_info=True)

    def _shutdown(self, sink: EventSink | None) -> None:
        """Flush (bounded), mark what was acknowledged, release the lock."""
        db = self._db
        try:
            if sink is not None:
                try:
                    if self._in_flight:
                        self._collect(sink.flush(self.settings.flush_timeout_s))
                except SinkBroken as exc:
                    _log.error("Kafka producer failed while flushing: %s", exc)
                if self._in_flight:
                    _log.warning(
                        "%d event(s) not acknowledged within %.1f s stay unpublished "
                        "and will be sent again",
                        len(self._in_flight),
                        self.settings.flush_timeout_s,
                    )
                self._discard_sink(sink)
            try:
                self._settle_database()
                self._mark()
            except self._source_errors as exc:
                _log.warning(
                    "Could not mark %d acknowledged event(s) published (%s); they will be "
                    "sent again",
                    len(self._completions.waiting),
                    exc,
                )
        finally:
            try:
                if db is not None:
                    db.call(self._source.close)
                else:  # pragma: no cover - run() always creates it
                    self._source.close()
            finally:
                if db is not None:
                    db.close()
                    self._db = None
                waker, self._waker = self._waker, None
                if waker is not None:
                    waker.close()
            _log.info(
                "Relay stopped: %d sent, %d published, %d failed deliveries, %d refused",
                self.stats.sent,
                self.stats.marked,
                self.stats.failed_deliveries,
                self.stats.rejected,
            )
