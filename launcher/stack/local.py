"""`chorus up` and `chorus down`: the whole stack on one machine, without Docker."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from launcher.settings import SERVICES, Endpoints, StackSettings
from launcher.stack.demo import load_demo_data
from launcher.stack.kafka import EmbeddedKafka
from launcher.stack.postgres import EmbeddedPostgres
from launcher.stack.processes import StackError, port_is_free, require_free_port, running_pid, spawn, stop
from launcher.stack.prometheus import LocalPrometheus, prometheus_binary
from launcher.stack.replica import SearchReplica
from launcher.stack.workers import Workers
from launcher.topics import ALL_TOPICS
from services.ingest import credentials
from shared import tenants
from shared.db import create_pool
from shared.kafka import TopicConfig, ensure_topics
from shared.migrate import migrate

DEMO_TENANT = "demo"
DEMO_APP_KEY = "demo-streamchat-app"


class LocalStack:
    """The embedded Postgres, Kafka broker and four services of one checkout."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.endpoints = Endpoints(self.environ)
        self.settings: StackSettings = self.endpoints.settings
        self.common = self.endpoints.common
        self.home = Path(self.settings.home).resolve()
        self.postgres = EmbeddedPostgres(
            self.home / "postgres" / "data", self.settings.postgres_port, self.settings.postgres_shared_buffers
        )
        self.replica = SearchReplica(self.home, self.endpoints)
        self.kafka = EmbeddedKafka(self.home, self.endpoints, self.environ)
        # The one-broker Kafka, whatever the size chosen (the chaos harness restarts it).
        self.broker = self.kafka.single
        self.workers = Workers(self.home)
        # Read here so that a bad CHORUS_WORKERS fails before anything starts.
        self.worker_counts = self.endpoints.workers
        self.prometheus = LocalPrometheus(
            self.home / "prometheus",
            self.settings.prometheus_port,
            {service: self.service_port(service) for service in SERVICES},
        )
        self.external_database = self.endpoints.external_database
        self.external_kafka = self.endpoints.external_kafka

    # Where Postgres and Kafka are is decided in launcher/settings.py, for the commands that do not
    # start the stack too.
    @property
    def database_url(self) -> str:
        return self.endpoints.database_url

    @property
    def admin_database_url(self) -> str:
        return self.endpoints.admin_database_url

    @property
    def kafka_bootstrap(self) -> str:
        return self.endpoints.kafka_bootstrap if self.external_kafka else self.kafka.bootstrap

    def topic_config(self) -> TopicConfig:
        """The topics' settings; with several embedded brokers, replicated unless the environment says otherwise."""
        configured = TopicConfig.of(self.common)
        if self.external_kafka:
            return configured
        return self.kafka.topic_config(configured, "CHORUS_TOPIC_REPLICATION_FACTOR" in self.environ)

    def service_port(self, service: str) -> int:
        return self.endpoints.service_port(service)

    def service_env(self) -> dict[str, str]:
        return {
            **self.environ,
            "CHORUS_DATABASE_URL": self.database_url,
            "CHORUS_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "CHORUS_TOPIC_REPLICATION_FACTOR": str(self.topic_config().replication_factor),
            "PYTHONUNBUFFERED": "1",
            **self.replica.service_env(),
        }

    def up(self) -> dict[str, str]:
        """Start what is not running, wait until every service is ready, return the demo env."""
        started = time.monotonic()
        self._check_service_ports()
        self.replica.check_port()
        if not self.external_database:
            self.postgres.start()
            asyncio.run(ensure_database(self.postgres.admin_url(), "chorus"))
        asyncio.run(
            migrate(
                self.admin_database_url,
                self.database_url,
                embedding_dim=self.settings.embedding_dim,
            )
        )
        # After the migrations, so that a new replica's base backup has the schema; before search.
        self.replica.start(self.postgres, running_pid(self._pid_path("search")) is not None)
        if not self.external_kafka:
            self.kafka.start()
        asyncio.run(ensure_topics(self.kafka_bootstrap, ALL_TOPICS, self.common.topic_prefix, self.topic_config()))
        for service in SERVICES:
            self._start_service(service)
        workers = [
            self.workers.start(service, number, self.service_env())
            for service, count in self.worker_counts.items()
            for number in range(2, count + 1)
        ]
        demo = asyncio.run(self._demo_credentials())
        self._wait_ready([*SERVICES, *workers], timeout=120.0)
        binary = prometheus_binary()
        # Optional: without the command, or with its port taken by another program, the stack runs without it.
        ours = running_pid(self.prometheus.pid_path) is not None
        if self.settings.prometheus != "off" and binary is not None and (ours or port_is_free(self.prometheus.port)):
            self.prometheus.service_ports.update(self._worker_ports())
            self.prometheus.start(binary)
            demo["CHORUS_PROMETHEUS_URL"] = self.prometheus.url
        self._write_env(demo)
        if self.settings.demo_data:
            loaded = load_demo_data(demo)
            demo["CHORUS_DEMO_RECORDS"] = str(sum(loaded.values()))
        demo["CHORUS_UP_SECONDS"] = f"{time.monotonic() - started:.1f}"
        return demo

    def down(self) -> list[str]:
        """Stop everything `up` started; returns the names of what was running."""
        stopped = ["prometheus"] if self.prometheus.stop() else []
        stopped += self.workers.stop_all()
        stopped += [service for service in reversed(SERVICES) if stop(self._pid_path(service))]
        if self.kafka.stop():
            stopped.append("kafka")
        if self.replica.stop():
            stopped.append("postgres-replica")
        if self.postgres.stop():
            stopped.append("postgres")
        return stopped

    def status(self) -> dict[str, bool]:
        running = {service: running_pid(self._pid_path(service)) is not None for service in SERVICES}
        running.update({name: self.workers.running(name) for name in self.workers.names()})
        running.update(self.kafka.status())
        running["postgres"] = self.postgres.running_pid() is not None
        if self.replica.wanted:
            running["postgres-replica"] = self.replica.server.running_pid() is not None
        if running_pid(self.prometheus.pid_path) is not None:
            running["prometheus"] = True
        return running

    def add_workers(self, *services: str) -> list[str]:
        """Start one more process of each of `services` (ingest, embed, cluster), wait until they are ready."""
        names = [self.workers.start_next(service, self.service_env()) for service in services]
        self._wait_ready(names, timeout=120.0)
        return names

    def metrics_url(self, name: str) -> str:
        """Where a service or a worker (`embed-2`) serves /metrics."""
        port = self.workers.port(name) if "-" in name else self.service_port(name)
        return f"http://127.0.0.1:{port}/metrics"

    def _worker_ports(self) -> dict[str, int]:
        ports = {name: self.workers.port(name) for name in self.workers.names() if self.workers.running(name)}
        return {name: port for name, port in ports.items() if port is not None}

    def _pid_path(self, service: str) -> Path:
        return self.home / "run" / f"{service}.pid"

    def _check_service_ports(self) -> None:
        for service in SERVICES:
            if running_pid(self._pid_path(service)) is None:
                require_free_port(
                    self.service_port(service),
                    f"the {service} service",
                    f"CHORUS_{service.upper()}_PORT",
                )

    def _start_service(self, service: str) -> None:
        if running_pid(self._pid_path(service)) is not None:
            return
        spawn(
            [sys.executable, "-m", f"services.{service}"],
            log_path=self.home / "logs" / f"{service}.log",
            pid_path=self._pid_path(service),
            env=self.service_env(),
        )

    def _wait_ready(self, names: list[str], timeout: float) -> None:
        """Wait until each service or worker in `names` answers /readyz with 200."""
        deadline = time.monotonic() + timeout
        waiting = list(names)
        with httpx.Client(timeout=2.0) as client:
            while waiting:
                for service in list(waiting):
                    if running_pid(self._pid_path(service)) is None:
                        log = self.home / "logs" / f"{service}.log"
                        raise StackError(f"the {service} service exited at start; the reason is at the end of {log}")
                    try:
                        url = self.metrics_url(service).removesuffix("/metrics") + "/readyz"
                        if client.get(url).status_code == 200:
                            waiting.remove(service)
                    except httpx.HTTPError:
                        pass
                if waiting and time.monotonic() > deadline:
                    raise StackError(
                        f"{', '.join(waiting)} did not become ready within {timeout:.0f}s; see {self.home / 'logs'}"
                    )
                if waiting:
                    time.sleep(0.5)

    async def _demo_credentials(self) -> dict[str, str]:
        previous = read_env_file(self.home / "demo.env")
        pool = await create_pool(self.database_url, max_size=2)
        try:
            tenant_id = await tenants.find_tenant(pool, DEMO_TENANT) or await tenants.create_tenant(pool, DEMO_TENANT)
            api_key = previous.get("CHORUS_DEMO_API_KEY", "")
            if await tenants.tenant_for_api_key(pool, api_key) != tenant_id:
                api_key = await tenants.create_api_key(pool, tenant_id, "demo")
            tavus_token = previous.get("CHORUS_TAVUS_TOKEN", "")
            if await credentials.tenant_for_tavus_token(pool, tavus_token) != tenant_id:
                tavus_token = await credentials.create_tavus_token(pool, tenant_id)
            app = await credentials.streamchat_app(pool, DEMO_APP_KEY)
            app_secret = app.api_secret if app is not None and app.tenant_id == tenant_id else secrets.token_hex(32)
            await credentials.add_streamchat_app(pool, tenant_id, DEMO_APP_KEY, app_secret)
        finally:
            await pool.close()
        return {
            "CHORUS_SEARCH_URL": f"http://127.0.0.1:{self.service_port('search')}",
            "CHORUS_INGEST_URL": f"http://127.0.0.1:{self.service_port('ingest')}",
            "CHORUS_DEMO_TENANT": str(tenant_id),
            "CHORUS_DEMO_API_KEY": api_key,
            "CHORUS_STREAMCHAT_API_KEY": DEMO_APP_KEY,
            "CHORUS_STREAMCHAT_API_SECRET": app_secret,
            "CHORUS_TAVUS_TOKEN": tavus_token,
            "CHORUS_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "CHORUS_DATABASE_URL": self.database_url,
            **self.replica.service_env(),
        }

    def _write_env(self, values: Mapping[str, str]) -> None:
        path = self.home / "demo.env"
        path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        path.chmod(0o600)


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY=value lines of an env file such as .chorus/demo.env; empty when there is none."""
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


async def ensure_database(admin_url: str, name: str) -> None:
    """Create the database `name` unless it exists (benchmarks keep theirs beside Chorus's)."""
    connection = await asyncpg.connect(admin_url)
    try:
        if not await connection.fetchval("SELECT true FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def with_database(url: str, name: str) -> str:
    """`url` naming the database `name` instead of its own."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
