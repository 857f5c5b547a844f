"""OutboxRelay over fakes of its own ports (an outbox source and an event sink).

Every fake enforces the relay's central invariant itself: the source refuses
to mark an event published unless the sink's broker acknowledged it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence

import pytest

from domain.outbox_ports import (
    ClaimedRow,
    Route,
)
from domain.records import OutboxEvent
from producer.relay import OutboxRelay
from producer.relay_settings import RelayExit, RelaySettings
from tests.relay_fakes import FakeSink, FakeSource, make_event

TOPIC = "t.push.requests"


def encode(event: OutboxEvent) -> bytes:
    return f"v{event.id}".encode()


ROUTES = {"E": Route(TOPIC, encode)}


def settings(**overrides: object) -> RelaySettings:
    base: dict[str, object] = {
        "batch_size": 10,
        "max_in_flight": 30,
        "idle_poll_s": 0.01,
        "standby_retry_s": 0.01,
        "rescan_interval_s": 3600.0,
        "ack_wait_s": 0.001,
        "flush_timeout_s": 0.1,
        "reconnect_initial_s": 0.001,
        "reconnect_max_s": 0.002,
        "drain": True,
    }
    base.update(overrides)
    return RelaySettings(**base)  # type: ignore[arg-type]


def build(
    events: Sequence[OutboxEvent],
    sink: FakeSink | None = None,
    routes: Mapping[str, Route] = ROUTES,
    **overrides: object,
) -> tuple[OutboxRelay, FakeSource, list[FakeSink]]:
    sinks: list[FakeSink] = []
    first = sink or FakeSink()

    def factory() -> FakeSink:
        made = first if not sinks else FakeSink()
        sinks.append(made)
        return made

    source = FakeSource(events, sinks)
    relay = OutboxRelay(source, factory, routes, settings(**overrides))
    return relay, source, sinks


def run_bounded(relay: OutboxRelay, timeout: float = 10.0) -> RelayExit:
    """Run the relay on a thread and fail (after stopping it) if it does not end in time."""
    result: list[RelayExit | BaseException] = []

    def target() -> None:
        try:
            result.append(relay.run())
        except BaseException as exc:  # surfaced below
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        relay.stop()
        thread.join(5)
        pytest.fail("relay did not finish in time")
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def sent_tokens(sinks: Sequence[FakeSink]) -> list[int]:
    return [m.token for s in sinks for m in s.sent]


# --- batching and order --------------------------------------------------------------------


def test_drains_backlog_in_batches_in_id_order() -> None:
    events = [make_event(i) for i in range(1, 26)]
    relay, source, sinks = build(events)

    assert run_bounded(relay) is RelayExit.DRAINED

    assert source.published == set(range(1, 26))
    assert sent_tokens(sinks) == list(range(1, 26))
    assert all(limit == 10 for _, limit in source.claims)
    # The cursor moves past each batch; the last pass starts from 0 and finds nothing.
    assert [after for after, _ in source.claims[:3]] == [0, 10, 20]
    assert source.claims[-1] == (0, 10)
    assert all(len(ids) <= 30 for ids in source.marks)
    assert source.closed and not source.leader


def test_message_carries_key_value_headers_and_route_topic() -> None:
    aggregate = uuid.uuid4()
    event = make_event(7, aggregate)
    relay, _, sinks = build([event])

    run_bounded(relay)

    (message,) = sinks[0].sent
    assert message.topic == TOPIC
    assert message.key == str(aggregate)
    assert message.value == b"v7"
    assert message.headers == event.headers
    assert message.token == 7


def test_routes_by_event_type() -> None:
    events = [make_event(1, event_type="E"), make_event(2, event_type="R")]
    routes = {"E": Route("a", encode), "R": Route("b", encode)}
    relay, source, sinks = build(events, routes=routes)

    run_bounded(relay)

    assert [(m.topic, m.token) for m in sinks[0].sent] == [("a", 1), ("b", 2)]
    assert source.published == {1, 2}


# --- the in-flight window ------------------------------------------------------------------


def test_in_flight_window_is_bounded_and_pipelined() -> None:
    events = [make_event(i) for i in range(1, 201)]
    # Slow broker: 3 acks per poll, so the window fills up.
    sink = FakeSink(ack_per_poll=3)
    relay, source, _ = build(events, sink, batch_size=10, max_in_flight=30)

    run_bounded(relay)

    assert source.published == set(range(1, 201))
    assert sink.max_outstanding <= 30
    # More than one batch was in flight at once: claims overlap with deliveries.
    assert sink.max_outstanding > 10


def test_never_claims_more_than_the_window_allows() -> None:
    events = [make_event(i) for i in range(1, 101)]
    sink = FakeSink(hold=True)
    polls_seen: list[int] = []

    def release_after_a_while(s: FakeSink) -> None:
        polls_seen.append(len(s.pending))
        if s.polls == 50:
            s.hold = False

    sink.on_poll = release_after_a_while
    relay, source, _ = build(events, sink, batch_size=10, max_in_flight=30)

    run_bounded(relay)

    # While every ack was held back, exactly three batches went out.
    assert max(polls_seen) == 30
    assert source.published == set(range(1, 101))


# --- completion only after the ack ---------------------------------------------------------


def test_nothing_is_marked_before_the_broker_acks() -> None:
    events = [make_event(i) for i in range(1, 21)]
    sink = FakeSink(hold=True)
    marks_while_held: list[int] = []

    def watch(s: FakeSink) -> None:
        marks_while_held.append(len(source.marks))
        if s.polls == 20:
            s.hold = False

    sink.on_poll = watch
    relay, source, _ = build(events, sink)

    run_bounded(relay)

    assert set(marks_while_held[:20]) == {0}
    assert source.published == set(range(1, 21))


def test_failed_delivery_is_not_marked_and_is_sent_again() -> None:
    events = [make_event(i) for i in range(1, 31)]
    sink = FakeSink(fail_once={5, 17})
    relay, source, sinks = build(events, sink)

    run_bounded(relay)

    tokens = sent_tokens(sinks)
    assert tokens.count(5) == 2 and tokens.count(17) == 2
    assert source.published == set(range(1, 31))
    assert relay.stats.failed_deliveries == 2
    # The FakeSource asserted on every mark that each id had been acked.
    first_marks = {i for ids in source.marks for i in ids}
    assert {5, 17} <= first_marks


def test_failed_delivery_starts_a_new_pass_from_the_beginning() -> None:
    events = [make_event(i) for i in range(1, 11)]
    sink = FakeSink(fail_once={3})
    relay, source, _ = build(events, sink, batch_size=5, max_in_flight=10)

    run_bounded(relay)

    # After the failure the window drained and the cursor went back to 0.
    restarts = [after for after, _ in source.claims[1:] if after == 0]
    assert restarts
    assert source.published == set(range(1, 11))


def test_next_batch_is_claimed_while_the_current_one_is_produced() -> None:
    events = [make_event(i) for i in range(1, 31)]
    prefetch_started = threading.Event()
    overlapped: list[bool] = []

    class SlowSink(FakeSink):
        def send(
            self, topic: str, key: str, value: bytes, headers: Mapping[str, str], token: int
        ) -> None:
            if token == 1:
                # Producing the first batch waits for the claim of the second one.
                overlapped.append(prefetch_started.wait(5))
            super().send(topic, key, value, headers, token)

    relay, source, _ = build(events, SlowSink(), batch_size=10, max_in_flight=30)

    def on_claim(after_id: int) -> None:
        if after_id == 10:
            prefetch_started.set()

    source.on_claim = on_claim

    run_bounded(relay)

    assert overlapped == [True]
    assert source.published == set(range(1, 31))


def test_failed_completion_keeps_the_ids_and_marks_them_after_reconnecting() -> None:
    events = [make_event(i) for i in range(1, 26)]
    relay, source, _ = build(events)
    source.fail_marks = 1

    assert run_bounded(relay) is RelayExit.DRAINED

    assert source.published == set(range(1, 26))
    assert relay.stats.reconnects == 1
    assert relay.stats.marked == len({i for ids in source.marks for i in ids})


# --- stragglers ----------------------------------------------------------------------------


def test_cursor_reset_picks_up_a_straggler_when_idle() -> None:
    events = [make_event(i) for i in range(1, 11)]
    relay, source, _ = build(events, drain=False)
    source.hidden.add(3)  # id 3 commits after ids 4..10 were read
    waits = {"n": 0}

    def commit_then_stop(src: FakeSource) -> bool:
        waits["n"] += 1
        if waits["n"] == 1:
            assert src.published == set(range(1, 11)) - {3}
            src.hidden.discard(3)
            return False  # no NOTIFY arrived: the fallback poll must find it anyway
        relay.stop()
        return False

    source.on_wait = commit_then_stop

    assert run_bounded(relay) is RelayExit.STOPPED
    assert source.published == set(range(1, 11))


def test_straggler_notified_while_the_window_was_busy_does_not_wait_for_the_idle_poll() -> None:
    events = [make_event(1), make_event(3)]
    sink = FakeSink(ack_per_poll=1)
    relay, source, _ = build(events, sink, drain=False, idle_poll_s=3600.0)
    source.add(make_event(2), hidden=True)

    def straggler_commits(s: FakeSink) -> None:
        if s.pending and 2 in source.hidden:
            # Id 2 commits while 1 and 3 are in flight; its NOTIFY is consumed then,
            # and the claim past the cursor (3) cannot see it.
            source.hidden.discard(2)
            source.notify = True

    sink.on_poll = straggler_commits
    published_before_idle_wait: list[set[int]] = []

    def idle(src: FakeSource) -> bool:
        if src.waits[-1] == 3600.0:  # the relay went idle (the safety-net poll)
            published_before_idle_wait.append(set(src.published))
            relay.stop()
            return False
        notified, src.notify = src.notify, False
        return notified

    source.on_wait = idle

    assert run_bounded(relay) is RelayExit.STOPPED
    # The pass that published something was followed by another one at once.
    assert published_before_idle_wait == [{1, 2, 3}]


def test_idle_relay_waits_the_full_idle_poll_between_empty_passes() -> None:
    relay, source, _ = build([], drain=False, idle_poll_s=2.0)

    def stop_on_third(src: FakeSource) -> bool:
        if len(src.waits) == 3:
            relay.stop()
        return False

    source.on_wait = stop_on_third

    run_bounded(relay)

    assert source.waits == [2.0, 2.0, 2.0]
    assert RelaySettings().idle_poll_s == 2.0  # 0.5 query/s when idle


def test_straggler_found_under_sustained_load_by_periodic_rescan() -> None:
    now = {"t": 0.0}
    events = [make_event(i) for i in range(1, 6)]
    sink = FakeSink()
    sinks: list[FakeSink] = []

    def factory() -> FakeSink:
        sinks.append(sink)
        return sink

    source = FakeSource(events, sinks)
    source.hidden.add(2)
    next_id = {"n": 6}

    def keep_busy(s: FakeSink) -> None:
        # Every poll, more rows commit (a backlog that never empties) and time passes.
        now["t"] += 0.1
        for _ in range(20):
            source.add(make_event(next_id["n"]))
            next_id["n"] += 1
        if s.polls == 5:
            source.hidden.discard(2)
        if 2 in source.published:
            relay.stop()
        if s.polls > 5000:
            relay.stop()

    sink.on_poll = keep_busy
    relay = OutboxRelay(
        source,
        factory,
        ROUTES,
        settings(drain=False, batch_size=10, max_in_flight=30, rescan_interval_s=1.0),
        clock=lambda: now["t"],
    )

    run_bounded(relay)

    assert 2 in source.published
    assert relay.stats.passes >= 2


def test_new_events_after_notify_continue_from_the_cursor() -> None:
    events = [make_event(i) for i in range(1, 4)]
    sink = FakeSink(hold=True)
    relay, source, _ = build(events, sink, drain=False)

    def on_poll(s: FakeSink) -> None:
        if s.polls == 3:
            source.add(make_event(4))
            source.notify = True
        if s.polls == 6:
            s.hold = False
        if s.polls > 8 and not s.pending:
            relay.stop()

    sink.on_poll = on_poll

    run_bounded(relay)

    assert source.published == {1, 2, 3, 4}
    # Event 4 was claimed past the cursor while 1..3 were still in flight.
    assert (3, 10) in source.claims


# --- poison events -------------------------------------------------------------------------


def test_unencodable_event_holds_back_its_aggregate_only() -> None:
    poisoned = uuid.uuid4()
    events = [
        make_event(1),
        make_event(2, poisoned),
        make_event(3),
        make_event(4, poisoned),
        make_event(5),
    ]

    def picky(event: OutboxEvent) -> bytes:
        if event.id == 2:
            raise ValueError("quantity is not a decimal")
        return encode(event)

    relay, source, sinks = build(events, routes={"E": Route(TOPIC, picky)})

    assert run_bounded(relay) is RelayExit.DRAINED

    assert source.published == {1, 3, 5}
    assert 4 not in sent_tokens(sinks)  # never overtakes the stuck event 2
    assert relay.stats.rejected >= 1


def test_refused_by_producer_and_unknown_type_are_not_marked() -> None:
    events = [make_event(1), make_event(2, event_type="Unknown"), make_event(3)]
    sink = FakeSink(reject={3})
    relay, source, _ = build(events, sink)

    assert run_bounded(relay) is RelayExit.DRAINED

    assert source.published == {1}


# --- stop, standby, outages ----------------------------------------------------------------


def test_graceful_stop_flushes_and_marks_what_was_acked() -> None:
    events = [make_event(i) for i in range(1, 21)]
    sink = FakeSink(hold=True)

    def stop_with_events_in_flight(s: FakeSink) -> None:
        if len(s.pending) == 20:
            relay.stop()

    sink.on_poll = stop_with_events_in_flight
    relay, source, _ = build(events, sink, drain=False)

    assert run_bounded(relay) is RelayExit.STOPPED

    assert sink.flushes >= 1
    assert source.published == set(range(1, 21))
    assert relay.in_flight == 0
    assert source.closed and not source.leader
    assert sink.closed


def test_stop_with_unacked_events_leaves_them_unpublished() -> None:
    events = [make_event(i) for i in range(1, 11)]
    sink = FakeSink(hold=True, hold_on_flush=True)

    def stop(s: FakeSink) -> None:
        if len(s.pending) == 10:
            relay.stop()

    sink.on_poll = stop
    relay, source, _ = build(events, sink, drain=False)

    assert run_bounded(relay) is RelayExit.STOPPED
    assert source.published == set()
    assert source.closed


def test_stop_while_idle_returns_promptly() -> None:
    relay, source, _ = build([], drain=False, idle_poll_s=0.01)

    def stop_on_third_wait(src: FakeSource) -> bool:
        if len(src.waits) == 3:
            relay.stop()
        return False

    source.on_wait = stop_on_third_wait

    assert run_bounded(relay, timeout=5) is RelayExit.STOPPED


def test_idle_relay_sends_one_claim_per_idle_wait() -> None:
    relay, source, _ = build([], drain=False, idle_poll_s=1.0)

    def count_then_stop(src: FakeSource) -> bool:
        if len(src.waits) == 10:
            relay.stop()
        return False

    source.on_wait = count_then_stop

    run_bounded(relay)

    assert all(timeout == 1.0 for timeout in source.waits)
    # One claim per (timed-out) wait, plus the first one: ~1 query per idle_poll_s.
    assert len(source.claims) == len(source.waits)


def test_standby_retries_the_lock_until_it_is_free() -> None:
    events = [make_event(i) for i in range(1, 4)]
    relay, source, _ = build(events)
    source.lock_denials = 3

    assert run_bounded(relay) is RelayExit.DRAINED

    assert source.lock_attempts == 4
    assert source.published == {1, 2, 3}


def test_stop_while_standing_by() -> None:
    relay, source, _ = build([make_event(1)], standby_retry_s=0.01)
    source.lock_denials = 10**9
    timer = threading.Timer(0.1, relay.stop)
    timer.start()
    try:
        assert run_bounded(relay, timeout=5) is RelayExit.STOPPED
    finally:
        timer.cancel()
    assert source.published == set()
    assert source.claims == []


def test_database_outage_reconnects_and_loses_nothing() -> None:
    events = [make_event(i) for i in range(1, 41)]
    relay, source, _ = build(events)
    calls = {"n": 0}
    original_claim = source.claim

    def flaky_claim(after_id: int, limit: int) -> list[ClaimedRow]:
        calls["n"] += 1
        if calls["n"] in (2, 3):
            source.fail_claims = 1
        return original_claim(after_id, limit)

    source.claim = flaky_claim  # type: ignore[method-assign]

    assert run_bounded(relay) is RelayExit.DRAINED

    assert source.published == set(range(1, 41))
    assert relay.stats.reconnects == 2
    assert relay.stats.leaderships == 3


def test_broken_sink_is_replaced_and_everything_is_published() -> None:
    events = [make_event(i) for i in range(1, 31)]
    sink = FakeSink(hold=True, broken_on_poll=3)
    relay, source, sinks = build(events, sink)

    assert run_bounded(relay) is RelayExit.DRAINED

    assert len(sinks) == 2
    assert sinks[0].closed
    assert source.published == set(range(1, 31))
    assert not sinks[0].acked


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        RelaySettings(batch_size=100, max_in_flight=10)
    with pytest.raises(ValueError, match="batch_size"):
        RelaySettings(batch_size=0)
    with pytest.raises(ValueError, match="idle_poll_s"):
        RelaySettings(idle_poll_s=0)


def test_main_needs_a_database_and_a_broker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from entrypoints.cli import main

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["relay", "--bootstrap-servers", "127.0.0.1:9"])
    assert exit_info.value.code == 2
    assert "DATABASE_URL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "relay",
                "--database-url",
                "postgresql+psycopg2://u@h/db",
                "--batch-size",
                "10",
                "--max-in-flight",
                "5",
            ]
        )
    assert exit_info.value.code == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "relay",
                "--database-url",
                "postgresql+psycopg2://u@h/db",
                "--bootstrap-servers",
                "h:1",
                "--batch-size",
                "10",
                "--max-in-flight",
                "5",
            ]
        )
    assert exit_info.value.code == 2
    assert "max_in_flight" in capsys.readouterr().err
