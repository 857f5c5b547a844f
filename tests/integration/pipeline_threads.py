"""Run an outbox relay and a push worker in threads for a test, and clean up after it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator

from confluent_kafka.admin import AdminClient

from adapters.kafka.config import admin_config
from consumer.worker import PushWorker, WorkerConfig, run_worker
from producer.relay import OutboxRelay


@contextlib.contextmanager
def relay_and_worker(
    relay: OutboxRelay, worker: PushWorker, config: WorkerConfig, timeout: float
) -> Iterator[None]:
    """Run both until the block ends; then stop them (the SIGTERM path) and join."""
    threads = [
        threading.Thread(target=relay.run, daemon=True),
        threading.Thread(
            target=lambda: run_worker(config, install_signal_handlers=False, worker=worker),
            daemon=True,
        ),
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        worker.stop()
        relay.stop()
        for thread in threads:
            thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "relay or worker did not stop"


def delete_topics(bootstrap: str, topics: Iterable[str]) -> None:
    """Delete ``topics`` (best effort: a test's topics must not outlive it)."""
    admin = AdminClient(admin_config(bootstrap))
    for future in admin.delete_topics(sorted(topics), operation_timeout=10).values():
        with contextlib.suppress(Exception):
            future.result()
