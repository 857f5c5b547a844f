"""The push worker process: its settings, its wiring and ``orderflow consume``.

* :class:`WorkerConfig` - the one settings object of the process: where it
  connects (flags, defaulting to ``$DATABASE_URL`` / ``$KAFKA_BOOTSTRAP_SERVERS``),
  its topics and group, and the loop's tuning (:class:`~consumer.worker.WorkerSettings`,
  including the retry schedule); :func:`worker_config` builds it of the parsed flags
  of ``orderflow consume`` (click options of the command in ``entrypoints.cli_processes``).
  The master key is not a setting: the cipher reads ``ENCRYPTION_MASTER_KEY``
  where it is used, so it never appears in a repr.
* :func:`build_worker` - a :class:`~consumer.worker.PushWorker` wired to
  PostgreSQL (a batched push-log writer per pipeline thread), Kafka (consumer group, DLQ
  producer), the record codec, the connector registry and the cipher.
* :func:`run_worker` / :func:`run` - run it until SIGTERM/SIGINT (:func:`run`: the
  process's logging and exit status, what ``orderflow consume`` calls).
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from adapters.kafka.config import consumer_config, producer_config
from adapters.kafka.consumer import ConsumedMessage, EventConsumer
from adapters.kafka.producer import EventProducer
from adapters.kafka.record_codec import KafkaAvroRecordCodec
from adapters.kafka.topics import TopicNames, ensure_topics
from adapters.postgres.push_log_sql import PushLogBatchWriter
from adapters.postgres.repositories import OutboxValueEncoder
from consumer.handling import RetrySettings
from consumer.push_attempt import (
    DEFAULT_LEASE_SECONDS,
    ConfigDecryptor,
    ConnectorLookup,
    PushAttempts,
)
from consumer.push_handler import PushHandler
from consumer.worker import PushWorker, WorkerSettings
from domain.messaging import RecordCodec
from entrypoints import bootstrap
from entrypoints.process_args import ServiceOptions, configure_logging

_log = logging.getLogger("orderflow.consumer")

#: ``sys.setswitchinterval`` of the worker process (see :func:`main`).
SWITCH_INTERVAL_S = 0.005


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker process is told (see the module docstring)."""

    bootstrap_servers: str
    database_url: str
    topic_prefix: str = "orderflow"
    group_id: str = "orderflow-push"
    client_id: str = "orderflow-push-worker"
    partitions: int = 6
    replication_factor: int = 1
    ensure_topics: bool = True
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    consumer_extra: dict[str, Any] | None = None
    #: The loop's tuning and the retry schedule.
    worker: WorkerSettings = field(default_factory=WorkerSettings)

    @property
    def retry(self) -> RetrySettings:
        """The retry schedule (``worker.retry``)."""
        return self.worker.retry


def outcome_value_encoder() -> OutboxValueEncoder:
    """The Kafka value encoder of the worker's outbox events (PushResult, retries, DLQ).

    The composition root's encoder without fastavro's ``validate`` before writing
    (``bootstrap.outbox_value_encoder(validate=False)``): the worker builds its
    records in code from typed values (ints, enums, ids, aware datetimes); the
    bytes are the same, for a quarter of the cost.
    """
    return bootstrap.outbox_value_encoder(validate=False)


def record_codec() -> RecordCodec:
    """The worker's wire format: Kafka headers and the Avro schemas of ``schemas/``."""
    return KafkaAvroRecordCodec()


def build_worker(
    config: WorkerConfig,
    *,
    registry: ConnectorLookup | None = None,
    cipher: ConfigDecryptor | None = None,
    codec: RecordCodec | None = None,
) -> PushWorker[ConsumedMessage]:
    """Return a worker wired to PostgreSQL, Kafka, the registry and the cipher (not started)."""
    # The master key first: a missing or malformed ENCRYPTION_MASTER_KEY stops the
    # worker at once with one line, before it touches Kafka or the database.
    cipher = cipher if cipher is not None else bootstrap.default_cipher()
    retry = config.retry
    topics = TopicNames(config.topic_prefix, retry_tiers=retry.retry_tiers)
    if config.ensure_topics:
        ensure_topics(
            config.bootstrap_servers, topics, config.partitions, config.replication_factor
        )
    factory = bootstrap.session_factory(database_url=config.database_url)
    registry = registry if registry is not None else bootstrap.default_registry()
    lease = config.lease_seconds

    url = config.database_url
    encoder = outcome_value_encoder()

    def new_attempts() -> PushAttempts:
        # One per pipeline thread: its unit of work and its writer's connection.
        uow = bootstrap.sql_unit_of_work(session_factory=factory)
        writer = PushLogBatchWriter(url, encoder=encoder)
        return PushAttempts(uow, registry, cipher, writer=writer, lease_seconds=lease)

    handler = PushHandler(new_attempts, retry, codec=codec if codec is not None else record_codec())
    consumer = EventConsumer(
        consumer_config(
            config.bootstrap_servers,
            group_id=config.group_id,
            client_id=config.client_id,
            logger=_log,
            extra=config.consumer_extra,
        )
    )
    producer = EventProducer(
        producer_config(config.bootstrap_servers, client_id=f"{config.client_id}-dlq", logger=_log)
    )
    settings = config.worker
    # Room for every thread's record plus as many waiting: fewer would idle threads.
    settings = dataclasses.replace(
        settings, max_pending=max(settings.max_pending, 2 * settings.concurrency)
    )
    return PushWorker(
        consumer,
        producer,
        handler,
        requests_topic=topics.requests,
        retry_topics=topics.retry_topics,
        dlq_topic=topics.dlq,
        settings=settings,
    )


def run_worker(
    config: WorkerConfig,
    *,
    install_signal_handlers: bool = True,
    worker: PushWorker[Any] | None = None,
) -> PushWorker[Any]:
    """Run the push worker until SIGTERM/SIGINT (what ``orderflow consume`` calls).

    Signal handlers are installed only from the main thread and restored after.
    Returns the stopped worker (its ``stats`` count the outcomes).
    """
    worker = worker or build_worker(config)
    previous: dict[signal.Signals, Any] = {}
    if install_signal_handlers and threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            _log.info("Push worker got %s: stopping", signal.Signals(signum).name)
            worker.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        worker.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return worker


def worker_config(
    services: ServiceOptions,
    *,
    group: str,
    concurrency: int,
    pipelines: int,
    batch_size: int,
    max_retries: int,
    retry_delay_base: float,
    retry_tiers: int,
    lease_seconds: float,
    instance_id: str | None,
) -> WorkerConfig:
    """The :class:`WorkerConfig` of ``orderflow consume``'s parsed flags.

    The flags' values were checked when parsed (click types of the ``consume``
    command); an ``instance_id`` makes the membership static.
    """
    return WorkerConfig(
        bootstrap_servers=services.bootstrap_servers,
        database_url=services.database_url,
        topic_prefix=services.topic_prefix,
        group_id=group,
        partitions=services.partitions,
        ensure_topics=services.ensure_topics,
        lease_seconds=lease_seconds,
        consumer_extra={"group.instance.id": instance_id} if instance_id else None,
        worker=WorkerSettings(
            concurrency=concurrency,
            pipelines=pipelines,
            batch_size=batch_size,
            retry=RetrySettings(max_retries, retry_delay_base, retry_tiers),
        ),
    )


def run(config: WorkerConfig, *, log_level: str) -> int:
    """Run the push worker process until SIGTERM/SIGINT; 0 after a clean stop, 1 on a failure.

    What ``orderflow consume`` calls: logging, the GIL switch interval, then
    :func:`run_worker`. A failure is reported as one ``error: ...`` line on stderr.
    """
    configure_logging(log_level)
    # Set explicitly (it is CPython's default): with the pool busy the worker is
    # CPU-bound, and a shorter interval forces a GIL hand-off (a futex wake and a
    # context switch) every interval among 60+ runnable threads. 0.5 ms cost 40 % more
    # CPU per export than 5 ms (1.9 vs 1.3 ms; 460 vs 690 exports/s at 0 ms ERP
    # latency, 430 vs 540 at 50 ms, interleaved runs). It once helped only because
    # the pool idled between refills (see ``WorkerSettings.pause_after_s``).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        run_worker(config)
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
