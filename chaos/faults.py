"""The faults of a chaos run and the processes they hit.

:class:`Fleet` runs the pipeline as it runs in production: one outbox relay
(``orderflow relay``) and two push workers (``orderflow consume``) in one
consumer group, each a
:class:`~entrypoints.pipeline_processes.ChildProcess` with a log file per
incarnation. :class:`Faults` injects one fault at a time:

* ``kill_relay`` - SIGKILL the relay, start a new one, wait until it leads;
* ``kill_worker`` - wait (briefly) until claims are in flight, SIGKILL one
  worker, start a new one in the same group;
* ``restart_kafka`` / ``restart_postgres`` - stop the service of the private
  infrastructure instance and start it again (same port: ports are fixed per
  state dir, which the fault checks);
* ``sftp_outage`` - stop sshd *and* its per-connection session processes
  (pooled SFTP sessions die too), wait, start it again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, text

from entrypoints.pipeline_processes import ORDERFLOW_MODULE, ChildProcess, ServiceProcessError
from infra import local

#: Every fault of a run, before shuffling: 3 relay kills, 3 worker kills, 3 outages.
FAULT_KINDS: tuple[str, ...] = (
    ("kill_relay",) * 3
    + ("kill_worker",) * 3
    + ("restart_kafka", "restart_postgres", "sftp_outage")
)
#: Longest wait for a restarted relay to lead or a restarted worker to get partitions.
READY_TIMEOUT_S = 180.0
#: Longest wait for a restarted service (the Kafka JVM can take a minute on 2 busy cores).
SERVICE_START_TIMEOUT_S = 240.0
#: PostgreSQL stays down this long, so approvals, relay and workers all notice.
POSTGRES_DOWN_S = 3.0
RELAY_READY = r"Relay is the leader"
WORKER_READY = r"Assigned \["


@dataclass
class Fleet:
    """The relay and the two push workers of a run, restartable."""

    common_args: Sequence[str]
    worker_args: Sequence[str]
    logs: Path
    #: Workers use static membership (``--instance-id <prefix>-<slot>``): a restarted worker
    #: takes its slot's partitions back without stopping the other one for a rebalance.
    instance_prefix: str = "chaos-worker"
    workers_count: int = 2
    relay: ChildProcess | None = None
    workers: list[ChildProcess] = field(default_factory=list)
    #: Held while a process is killed and replaced (the watchdog then looks away).
    lock: threading.Lock = field(default_factory=threading.Lock)
    incarnations: dict[str, int] = field(default_factory=dict)
    unexpected_exits: list[str] = field(default_factory=list)

    def _log_path(self, name: str) -> Path:
        number = self.incarnations.get(name, 0) + 1
        self.incarnations[name] = number
        return self.logs / f"{name}-{number}.log"

    def start_relay(self) -> ChildProcess:
        """Start a (new) relay process."""
        self.relay = ChildProcess(
            "relay", ORDERFLOW_MODULE, ["relay", *self.common_args], self._log_path("relay")
        ).start()
        return self.relay

    def start_worker(self, slot: int) -> ChildProcess:
        """Start a (new) push worker in ``slot``."""
        name = f"worker{slot}"
        worker = ChildProcess(
            f"push worker {slot}",
            ORDERFLOW_MODULE,
            [
                "consume",
                *self.common_args,
                *self.worker_args,
                "--instance-id",
                f"{self.instance_prefix}-{slot}",
            ],
            self._log_path(name),
        ).start()
        if slot < len(self.workers):
            self.workers[slot] = worker
        else:
            self.workers.append(worker)
        return worker

    def start(self) -> None:
        """Start the relay and the workers; wait until each is ready."""
        relay = self.start_relay()
        for slot in range(self.workers_count):
            self.start_worker(slot)
        relay.wait_for_log(RELAY_READY, READY_TIMEOUT_S)
        for worker in self.workers:
            worker.wait_for_log(WORKER_READY, READY_TIMEOUT_S)

    def processes(self) -> list[ChildProcess]:
        """Every current process (relay first)."""
        return ([self.relay] if self.relay else []) + list(self.workers)

    def watch(self, emit: Callable[[str], None]) -> None:
        """Restart a process that exited without being killed by a fault (and remember it)."""
        if not self.lock.acquire(blocking=False):
            return  # a fault is replacing a process right now
        try:
            if self.relay is not None and not self.relay.running():
                self._unexpected(self.relay, emit)
                self.start_relay()
            for slot, worker in enumerate(self.workers):
                if not worker.running():
                    self._unexpected(worker, emit)
                    self.start_worker(slot)
        finally:
            self.lock.release()

    def _unexpected(self, process: ChildProcess, emit: Callable[[str], None]) -> None:
        what = f"{process.name} (pid {process.pid}) exited on its own"
        self.unexpected_exits.append(what)
        emit(f"chaos: UNEXPECTED: {what}; restarting it. Log {process.log_path}:\n{process.tail()}")

    def stop(self, timeout_s: float) -> dict[str, int | None]:
        """SIGTERM the workers, then the relay (it publishes their last outcomes)."""
        exits: dict[str, int | None] = {}
        with self.lock:
            for worker in self.workers:
                exits[worker.name] = worker.stop(timeout_s)
            if self.relay is not None:
                exits["relay"] = self.relay.stop(timeout_s)
        return exits


def ensure_up_patiently(
    services: Sequence[str] | None,
    state_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> local.Endpoints:
    """``infra.local.ensure_up``, waiting longer: on 2 busy cores a JVM can need minutes."""
    deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
    while True:
        try:
            if progress is None:
                return local.ensure_up(services, state_dir=state_dir)
            return local.ensure_up(services, state_dir=state_dir, progress=progress)
        except local.InfraError:
            # A start that outlived ensure_up's own wait keeps running: the next call
            # finds the process and waits for it to answer.
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def descendants(pid: int) -> list[int]:
    """Every descendant process of ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Faults:
    """Injects the faults of :data:`FAULT_KINDS` into one run."""

    def __init__(
        self,
        fleet: Fleet,
        state_dir: Path,
        engine: Engine,
        org_id: uuid.UUID,
        *,
        choose: Callable[[Sequence[int]], int],
        sftp_outage_s: float = 10.0,
    ) -> None:
        self.fleet = fleet
        self.state_dir = state_dir
        self.engine = engine
        self.org_id = org_id
        self._choose = choose
        self.sftp_outage_s = sftp_outage_s

    def inject(self, kind: str) -> str:
        """Inject one fault; return what was done, for the progress line."""
        action: Callable[[], str] = getattr(self, kind)
        return action()

    # --- helpers --------------------------------------------------------------------------
    def _count(self, sql: str) -> str:
        try:
            with self.engine.connect() as conn:
                return str(conn.execute(text(sql), {"org": self.org_id}).scalar_one())
        except Exception as exc:  # the count is informative only
            return f"? ({type(exc).__name__})"

    def _pending_claims(self) -> str:
        return self._count(
            "SELECT count(*) FROM erp_push_log WHERE org_id = :org AND status = 'PENDING'"
        )

    def _restart(self, service: str, pause_s: float = 0.0) -> str:
        before = local.read_endpoints(state_dir=self.state_dir)
        started = time.monotonic()
        local.down([service], state_dir=self.state_dir)
        stopped = time.monotonic()
        if pause_s:
            time.sleep(pause_s)
        after = self._ensure_up(service)
        if before is not None and before != after:
            raise ServiceProcessError(f"{service} came back on other endpoints: {after}")
        return (
            f"stopped in {stopped - started:.1f} s, back after {time.monotonic() - stopped:.1f} s "
            "on the same port"
        )

    def _ensure_up(self, service: str) -> local.Endpoints:
        return ensure_up_patiently([service], self.state_dir)

    # --- the faults -----------------------------------------------------------------------
    def _unpublished(self) -> str:
        return self._count("SELECT count(*) FROM outbox_event WHERE org_id = :org")

    def _await_work(self, count: Callable[[], str], within_s: float = 5.0) -> None:
        """Wait (briefly) until ``count`` is not zero: a kill then hits work in flight."""
        deadline = time.monotonic() + within_s
        while count() == "0" and time.monotonic() < deadline:
            time.sleep(0.02)

    def kill_relay(self) -> str:
        """SIGKILL the relay (with events in flight if there are any soon) and start a new one."""
        self._await_work(self._unpublished)
        with self.fleet.lock:
            relay = self.fleet.relay
            assert relay is not None
            unpublished = self._unpublished()
            pid = relay.pid
            relay.kill()
            started = time.monotonic()
            new = self.fleet.start_relay()
            new.wait_for_log(RELAY_READY, READY_TIMEOUT_S)
        return (
            f"SIGKILL relay pid {pid} ({unpublished} events unpublished); new relay pid "
            f"{new.pid} leads after {time.monotonic() - started:.1f} s"
        )

    def kill_worker(self) -> str:
        """SIGKILL one push worker while it has claims in flight; start a new one."""
        self._await_work(self._pending_claims)
        with self.fleet.lock:
            slot = self._choose(range(len(self.fleet.workers)))
            worker = self.fleet.workers[slot]
            pending = self._pending_claims()
            pid = worker.pid
            worker.kill()
            started = time.monotonic()
            new = self.fleet.start_worker(slot)
            try:
                new.wait_for_log(WORKER_READY, READY_TIMEOUT_S)
                ready = f"assigned after {time.monotonic() - started:.1f} s"
            except ServiceProcessError as exc:
                if not new.running():
                    raise
                ready = f"not assigned yet ({exc.args[0].splitlines()[0]})"
        return (
            f"SIGKILL push worker {slot} pid {pid} mid-batch ({pending} claims pending); "
            f"new worker pid {new.pid} {ready}"
        )

    def restart_kafka(self) -> str:
        """Stop the Kafka broker and start it again."""
        return "Kafka broker restarted: " + self._restart("kafka")

    def restart_postgres(self) -> str:
        """Stop PostgreSQL (fast shutdown) and start it again."""
        return "PostgreSQL restarted: " + self._restart("postgres", POSTGRES_DOWN_S)

    def sftp_outage(self) -> str:
        """Stop sshd and kill its session processes; start it again after the outage."""
        statuses = {s.name: s for s in local.status(state_dir=self.state_dir)}
        sshd = statuses["sftp"].pid
        sessions = descendants(sshd) if sshd else []
        before = local.read_endpoints(state_dir=self.state_dir)
        local.down(["sftp"], state_dir=self.state_dir)
        killed = 0
        for pid in sessions:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        started = time.monotonic()
        time.sleep(self.sftp_outage_s)
        after = self._ensure_up("sftp")
        if before is not None and before != after:
            raise ServiceProcessError(f"sftp came back on other endpoints: {after}")
        return (
            f"SFTP server down for {time.monotonic() - started:.1f} s "
            f"(sshd pid {sshd} and {killed} session processes killed)"
        )
