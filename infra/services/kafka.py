"""A single-node Apache Kafka 4.x broker in KRaft combined mode, from Maven Central jars.

The jars are fetched once with Maven (``infra/kafka/pom.xml``) into
``${XDG_CACHE_HOME:-~/.cache}/orderflow/kafka-<version>/libs`` and shared by every checkout.
The broker runs as the calling user on 127.0.0.1 with test-friendly settings (replication
factor 1, one offsets partition, no initial rebalance delay).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from infra._proc import (
    InfraError,
    ServiceUser,
    cmdline,
    current_user,
    failure,
    file_lock,
    pid_alive,
    port_accepts,
    read_pid,
    terminate,
    wait_until,
)
from infra.layout import Layout
from infra.services.base import ServiceStatus

NAME = "kafka"
DEFAULT_VERSION = "4.4.0"
POM = Path(__file__).resolve().parent.parent / "kafka" / "pom.xml"
HEAP = "512m"
MAIN_CLASS = "kafka.Kafka"


def version() -> str:
    """Return the Kafka version to run ($ORDERFLOW_KAFKA_VERSION or :data:`DEFAULT_VERSION`)."""
    return os.environ.get("ORDERFLOW_KAFKA_VERSION", DEFAULT_VERSION)


def cache_dir(kafka_version: str | None = None) -> Path:
    """Return the per-version jar cache dir (shared between checkouts)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orderflow" / f"kafka-{kafka_version or version()}"


def java() -> str:
    """Return the ``java`` executable ($JAVA_HOME/bin/java, else from PATH)."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise InfraError("kafka: no `java` on PATH (Kafka 4 needs Java 17+; set JAVA_HOME)")
    return found


def ensure_libs(layout: Layout, kafka_version: str | None = None) -> Path:
    """Download the broker jars with Maven unless cached; return the lib dir."""
    kafka_version = kafka_version or version()
    cache = cache_dir(kafka_version)
    libs, marker = cache / "libs", cache / ".complete"
    if marker.exists() and libs.is_dir():
        return libs
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / ".lock"):
        if marker.exists() and libs.is_dir():
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise InfraError("kafka: no `mvn` on PATH (install Maven: apt-get install maven)")
        log = layout.logs / "kafka-download.log"
        layout.logs.mkdir(parents=True, exist_ok=True)
        tmp = cache / "libs.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        with log.open("ab") as fh:
            proc = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(POM),
                    f"-Dkafka.version={kafka_version}",
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={tmp}",
                ],
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=900,
            )
        if proc.returncode != 0 or not (tmp / f"kafka_2.13-{kafka_version}.jar").exists():
            raise failure(NAME, f"fetching Kafka {kafka_version} jars with Maven failed", log)
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        marker.write_text(f"{kafka_version} fetched in {time.monotonic() - started:.1f}s\n")
    return libs


def _cluster_id(layout: Layout) -> str:
    path = layout.kafka_root / "cluster.id"
    try:
        existing = path.read_text().strip()
    except OSError:
        existing = ""
    if existing:
        return existing
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
    path.write_text(cid + "\n")
    return cid


def _server_properties(layout: Layout, port: int, controller_port: int) -> str:
    return f"""\
# Written by `python -m infra`: a single-node DEV/TEST broker. Rewritten on every start.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
log.dirs={layout.kafka_data}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=4194304
log.cleaner.threads=1
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
delete.topic.enable=true
"""


def _log4j2_properties(layout: Layout) -> str:
    return f"""\
# Written by `python -m infra`. No log4j shutdown hook: keep logging while Kafka shuts down.
status = warn
shutdownHook = disable
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {layout.kafka_log}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
"""


def _running_pid(layout: Layout) -> int | None:
    pid = read_pid(layout.kafka_pid)
    if pid is None or not pid_alive(pid) or MAIN_CLASS not in cmdline(pid):
        return None
    return pid


def status(layout: Layout) -> ServiceStatus:
    """Report whether the broker runs, and where."""
    pid = _running_pid(layout)
    port = layout.read_ports().get("kafka")
    return ServiceStatus(NAME, pid is not None, pid, port, f"Apache Kafka {version()} (KRaft)")


def _format(layout: Layout, classpath: str, props: Path, log4j: Path, controller_port: int) -> None:
    """Format the KRaft storage once (again if the controller endpoint moved)."""
    stamp = layout.kafka_root / "formatted.json"
    want = {"controller_port": controller_port, "version": version()}
    try:
        have = json.loads(stamp.read_text())
    except (OSError, ValueError):
        have = None
    if have == want and (layout.kafka_data / "meta.properties").exists():
        return
    shutil.rmtree(layout.kafka_data, ignore_errors=True)
    layout.kafka_data.mkdir(parents=True)
    with layout.kafka_out.open("ab") as out:
        proc = subprocess.run(
            [
                java(),
                "-Xmx256m",
                f"-Dlog4j2.configurationFile={log4j}",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={_cluster_id(layout)}",
                "-c",
                str(props),
                "--standalone",
            ],
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
    if proc.returncode != 0:
        raise failure(NAME, "kafka-storage format failed", layout.kafka_out, layout.kafka_log)
    stamp.write_text(json.dumps(want) + "\n")


def _metadata_answers(port: int, timeout: float) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=max(timeout, 0.5))
    except Exception:  # KafkaException while the broker is still starting
        return False
    return bool(metadata.brokers)


def ensure(
    layout: Layout, user: ServiceUser, port: int, controller_port: int, timeout: float = 60
) -> int:
    """Start the broker unless it already runs; wait until metadata answers; return its port."""
    del user  # the broker runs as the caller; kept for a uniform launcher signature
    if _running_pid(layout) is not None:
        if not _metadata_answers(port, 10):
            raise failure(NAME, f"running but not answering on {port}", layout.kafka_log)
        return port
    libs = ensure_libs(layout)
    layout.kafka_root.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    props = layout.kafka_root / "server.properties"
    log4j = layout.kafka_root / "log4j2.properties"
    props.write_text(_server_properties(layout, port, controller_port))
    log4j.write_text(_log4j2_properties(layout))
    classpath = f"{libs}/*"
    _format(layout, classpath, props, log4j, controller_port)
    argv = [
        java(),
        f"-Xms{HEAP}",
        f"-Xmx{HEAP}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={layout.logs}",
        "-cp",
        classpath,
        MAIN_CLASS,
        str(props),
    ]
    pid = current_user().spawn_detached(argv, layout.kafka_out)
    layout.kafka_pid.write_text(f"{pid}\n")
    deadline = time.monotonic() + timeout

    def alive() -> bool:
        return pid_alive(pid)

    if not wait_until(lambda: port_accepts(port), timeout, alive=alive):
        why = "exited during startup" if not alive() else f"port {port} not open in {timeout:.0f}s"
        raise failure(NAME, why, layout.kafka_log, layout.kafka_out)
    while not _metadata_answers(port, min(5.0, max(0.5, deadline - time.monotonic()))):
        if not alive() or time.monotonic() >= deadline:
            why = "exited during startup" if not alive() else "metadata request unanswered"
            raise failure(NAME, why, layout.kafka_log, layout.kafka_out)
        time.sleep(0.2)
    return port


def stop(layout: Layout, timeout: float = 30) -> bool:
    """Stop the broker with SIGTERM (SIGKILL after ``timeout``); return True if it ran."""
    pid = _running_pid(layout)
    if pid is None:
        layout.kafka_pid.unlink(missing_ok=True)
        return False
    terminate(pid, timeout)
    layout.kafka_pid.unlink(missing_ok=True)
    return True
