"""Where the real services for integration and e2e tests come from.

Each service (PostgreSQL, Kafka, SFTP) is resolved on first use, independently:

1. environment variables, if set: ``DATABASE_URL``, ``KAFKA_BOOTSTRAP_SERVERS``,
   ``SFTP_HOST/PORT/USERNAME/PRIVATE_KEY_PATH/HOST_KEY/DROPZONE_DIR``
   (``make test`` exports the ones written by ``python -m infra up``);
2. testcontainers, if a Docker daemon answers (PostgreSQL 15 and Apache Kafka 4; SFTP
   always comes from the local sshd, so its dropzone is on this machine's disk);
3. local processes started by :func:`infra.local.ensure_up` (no Docker needed).

``ORDERFLOW_TEST_BACKEND=env|docker|local`` forces one source (default ``auto``).
Nothing is started unless a test asks for one of the fixtures ``endpoints``,
``database_url``, ``kafka_bootstrap_servers``, ``sftp_server`` or ``tryton_server``; unit
tests must not. ``tryton_server`` is a real ``trytond`` (with ``sale``) per test module,
started on a copy of a template database built once and cached on disk (``infra/tryton.py``).
Tests under ``tests/integration`` and ``tests/e2e`` get the ``integration`` / ``e2e`` marker.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from hypothesis import HealthCheck, settings

# The composition root wires the registered connector types into the ORM model on
# import, as an application does at start-up (tests build ERPConnection rows).
import entrypoints.bootstrap  # noqa: F401
from infra.endpoints import Endpoints, SftpServer
from infra.tryton import TrytonServer, ensure_template, start_server, stop_server

__all__ = ["SftpServer"]

# --- hypothesis ---------------------------------------------------------------------------
# No deadlines anywhere: these machines are shared and noisy, and the suite makes no timed
# assertions. Tests that want more (or fewer) examples say so with @settings.
# - "dev" (default): random examples, the local example database replays past failures.
# - "ci": derandomized (examples derived from each test's name, no database), so a CI run
#   is reproducible and a red build cannot turn green by rerunning it; local runs keep
#   exploring new examples. Chosen with HYPOTHESIS_PROFILE, else "ci" when CI is set.
settings.register_profile("dev", deadline=None, max_examples=50)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=50,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

TESTS_DIR = Path(__file__).resolve().parent
SERVICE_FIXTURES = frozenset(
    {
        "endpoints",
        "database_url",
        "kafka_bootstrap_servers",
        "sftp_server",
        "service_resolver",
        "tryton_server",
        "tryton_template",
    }
)
BACKENDS = ("auto", "env", "docker", "local")
POSTGRES_IMAGE = "postgres:15"
KAFKA_IMAGE = "apache/kafka:4.1.1"


def docker_answers(timeout: float = 1.0) -> bool:
    """Tell whether a Docker daemon answers ``GET /_ping`` (without importing docker)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    url = urlparse(host)
    address: str | tuple[str, int]
    if url.scheme == "unix":
        family, address = socket.AF_UNIX, url.path
    elif url.scheme in ("tcp", "http") and url.hostname:
        family, address = socket.AF_INET, (url.hostname, url.port or 2375)
    else:
        return False
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(1024)
        except OSError:
            return False
    return reply.startswith(b"HTTP/") and b" 200 " in reply.split(b"\r\n", 1)[0]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kafka_metadata_answers(bootstrap: str, timeout: float) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except Exception:
        return False


class ServiceResolver:
    """Finds (and, if needed, starts) each service once per test session."""

    def __init__(self, backend: str) -> None:
        if backend not in BACKENDS:
            raise pytest.UsageError(f"ORDERFLOW_TEST_BACKEND must be one of {BACKENDS}")
        self.backend = backend
        self._cache: dict[str, Any] = {}
        self._containers: list[Any] = []
        self._docker: bool | None = None

    # --- choosing ---------------------------------------------------------------------
    def _use_docker(self) -> bool:
        if self.backend == "local" or self.backend == "env":
            return False
        if self._docker is None:
            self._docker = docker_answers()
            if self.backend == "docker" and not self._docker:
                pytest.fail("ORDERFLOW_TEST_BACKEND=docker but no Docker daemon answers")
        return self._docker

    def _from_env(self, *keys: str) -> bool:
        if self.backend in ("docker", "local"):
            return False
        present = all(os.environ.get(key) for key in keys)
        if self.backend == "env" and not present:
            pytest.fail(f"ORDERFLOW_TEST_BACKEND=env but {', '.join(keys)} not all set")
        return present

    def _local(self, service: str) -> Endpoints:
        from infra.local import InfraError, ensure_up

        try:
            return ensure_up(services=(service,))
        except InfraError as exc:
            pytest.fail(f"could not start local {service}:\n{exc}", pytrace=False)

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = make()
        return self._cache[name]

    # --- services ---------------------------------------------------------------------
    def database_url(self) -> str:
        """SQLAlchemy URL (``postgresql+psycopg2://...``) of an empty-ish database."""

        def make() -> str:
            if self._from_env("DATABASE_URL"):
                return os.environ["DATABASE_URL"]
            if self._use_docker():
                return self._docker_postgres()
            return self._local("postgres").database_url

        return str(self._once("postgres", make))

    def kafka_bootstrap_servers(self) -> str:
        """``host:port`` of an Apache Kafka 4 broker."""

        def make() -> str:
            if self._from_env("KAFKA_BOOTSTRAP_SERVERS"):
                return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
            if self._use_docker():
                return self._docker_kafka()
            return self._local("kafka").kafka_bootstrap_servers

        return str(self._once("kafka", make))

    def sftp_server(self) -> SftpServer:
        """An SFTP server with a key login, a pinned host key and a writable dropzone."""

        def make() -> SftpServer:
            if self.backend != "local":
                from_env = SftpServer.from_env(os.environ)
                if from_env is not None:
                    return from_env
                if self.backend == "env":
                    pytest.fail("ORDERFLOW_TEST_BACKEND=env but SFTP_* are not all set")
            # No container for SFTP: the local sshd keeps the dropzone on this disk.
            return self._local("sftp").sftp_server()

        result = self._once("sftp", make)
        assert isinstance(result, SftpServer)
        return result

    # --- docker -----------------------------------------------------------------------
    def _docker_postgres(self) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from testcontainers.community.postgres import PostgresContainer

            container = PostgresContainer(POSTGRES_IMAGE, dbname="orderflow", driver="psycopg2")
            container.start()
            self._containers.append(container)
            return str(container.get_connection_url())

    def _docker_kafka(self) -> str:
        host_port = _free_port()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from testcontainers.core.container import DockerContainer

            container = DockerContainer(KAFKA_IMAGE)
            host = "127.0.0.1"
            container.with_bind_ports(9092, host_port)
            for key, value in {
                "KAFKA_NODE_ID": "1",
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
                "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{host_port}",
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "1",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
                "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            }.items():
                container.with_env(key, value)
            container.start()
            self._containers.append(container)
        bootstrap = f"{host}:{host_port}"
        deadline = time.monotonic() + 90
        while not _kafka_metadata_answers(bootstrap, 2.0):
            if time.monotonic() > deadline:
                pytest.fail(f"Kafka container ({KAFKA_IMAGE}) did not answer on {bootstrap}")
            time.sleep(0.5)
        return bootstrap

    def close(self) -> None:
        """Stop the containers this session started (local processes stay up for reuse)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            while self._containers:
                self._containers.pop().stop()


# --- hooks --------------------------------------------------------------------------------


def _test_area(item: pytest.Item) -> str:
    """Return 'unit', 'integration', 'e2e', ... for an item under tests/ ('' elsewhere)."""
    try:
        parts = Path(str(item.path)).resolve().relative_to(TESTS_DIR).parts
    except ValueError:
        return ""
    return parts[0] if len(parts) > 1 else ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by folder: tests/integration -> integration, tests/e2e -> e2e."""
    for item in items:
        area = _test_area(item)
        if area == "integration":
            item.add_marker(pytest.mark.integration)
        elif area == "e2e":
            item.add_marker(pytest.mark.e2e)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Unit tests must not reach real services."""
    used = SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if used and _test_area(item) == "unit":
        pytest.fail(
            f"unit test uses service fixture(s) {sorted(used)}: move it to tests/integration",
            pytrace=False,
        )


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def service_resolver() -> Iterator[ServiceResolver]:
    """The per-session resolver behind the service fixtures."""
    resolver = ServiceResolver(os.environ.get("ORDERFLOW_TEST_BACKEND", "auto").lower())
    try:
        yield resolver
    finally:
        resolver.close()


@pytest.fixture(scope="session")
def database_url(service_resolver: ServiceResolver) -> str:
    """SQLAlchemy URL of the ``orderflow`` PostgreSQL database (``postgresql+psycopg2://``)."""
    return service_resolver.database_url()


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(service_resolver: ServiceResolver) -> str:
    """Bootstrap servers (``host:port``) of an Apache Kafka 4 broker."""
    return service_resolver.kafka_bootstrap_servers()


@pytest.fixture(scope="session")
def sftp_server(service_resolver: ServiceResolver) -> SftpServer:
    """An SFTP server: key login, host key to pin, writable dropzone dir."""
    return service_resolver.sftp_server()


@pytest.fixture(scope="session")
def endpoints(
    database_url: str, kafka_bootstrap_servers: str, sftp_server: SftpServer
) -> Endpoints:
    """All three services as one :class:`~infra.endpoints.Endpoints`."""
    return Endpoints(
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        sftp_host=sftp_server.host,
        sftp_port=sftp_server.port,
        sftp_username=sftp_server.username,
        sftp_private_key_path=sftp_server.private_key_path,
        sftp_host_key=sftp_server.host_key_line,
        sftp_dropzone_dir=sftp_server.dropzone_dir,
    )


#: Failed logins are counted within Tryton's session timeout and answered ever more
#: slowly (then with HTTP 429); the tests try wrong passwords on purpose, so keep it short.
TRYTON_SESSION_TIMEOUT_S = 3


@pytest.fixture(scope="session")
def tryton_template() -> str:
    """The activated and seeded Tryton template database (built once, cached on disk)."""

    def progress(message: str) -> None:
        print(f"[tryton] {message}", file=sys.stderr, flush=True)

    return str(ensure_template(progress=progress))


@pytest.fixture(scope="module")
def tryton_server(
    tryton_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrytonServer]:
    """A ``trytond`` on 127.0.0.1 on a fresh copy of the template, private to the module."""
    server = start_server(
        tmp_path_factory.mktemp("tryton"), session_timeout_s=TRYTON_SESSION_TIMEOUT_S
    )
    try:
        yield server
    finally:
        stop_server(server)
