"""The `chorus` command's settings and where it finds Postgres and Kafka, without the embedded stack."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from services.cluster.settings import ClusterSettings
from services.embed.settings import EmbedSettings
from services.ingest.settings import IngestSettings
from services.search.settings import SearchSettings
from shared.settings import CommonSettings, SettingsError, load, setting

# The launcher knows the services; the services know nothing of it.
SERVICE_SETTINGS: dict[str, Any] = {
    "ingest": IngestSettings,
    "embed": EmbedSettings,
    "cluster": ClusterSettings,
    "search": SearchSettings,
}
SERVICES = tuple(SERVICE_SETTINGS)
# What `--workers` names, and the service whose processes it adds: ingest's normalizer is the
# ingest service's agents that consume the raw topics.
WORKER_SERVICES = {"embed": "embed", "cluster": "cluster", "normalizer": "ingest"}
SERVICE_DATABASE_USER = "chorus_app"
# The embedded Postgres's superuser and database (launcher/stack/postgres.py creates them).
EMBEDDED_SUPERUSER = "postgres"
EMBEDDED_DATABASE = "chorus"


def embedded_admin_url(port: int, database: str = EMBEDDED_DATABASE) -> str:
    """The superuser's URL of the embedded Postgres on `port`."""
    return f"postgresql://{EMBEDDED_SUPERUSER}@127.0.0.1:{port}/{database}"


@dataclass(frozen=True)
class StackSettings:
    """Where the embedded stack keeps its files and which ports it takes."""

    home: str = setting("CHORUS_HOME", ".chorus", "Folder of the embedded stack's data, logs and pid files.")
    postgres_port: int = setting("CHORUS_POSTGRES_PORT", 5432, "Port of the embedded Postgres.")
    postgres_shared_buffers: str = setting(
        "CHORUS_POSTGRES_SHARED_BUFFERS", "1GB", "Shared buffers of the embedded Postgres (its vector index's cache)."
    )
    postgres_replica: bool = setting(
        "CHORUS_POSTGRES_REPLICA",
        False,
        "Whether `chorus up` starts a streaming replica of the embedded Postgres for search to read "
        "(`--postgres-replica`); a later `up` keeps the one it finds.",
    )
    postgres_replica_port: int = setting(
        "CHORUS_POSTGRES_REPLICA_PORT", 0, "Port of the embedded Postgres's replica (0: CHORUS_POSTGRES_PORT + 1)."
    )
    kafka_port: int = setting("CHORUS_KAFKA_PORT", 9092, "Port of the embedded Kafka broker.")
    kafka_controller_port: int = setting(
        "CHORUS_KAFKA_CONTROLLER_PORT",
        9093,
        "Port of the embedded Kafka broker's KRaft controller.",
    )
    kafka_brokers: int = setting(
        "CHORUS_KAFKA_BROKERS",
        1,
        "Brokers of the embedded Kafka (`chorus up --kafka-brokers 3`): broker n (from 0) listens on "
        "CHORUS_KAFKA_PORT + 2n, its controller on CHORUS_KAFKA_CONTROLLER_PORT + 2n.",
        minimum=1,
    )
    workers: tuple[str, ...] = setting(
        "CHORUS_WORKERS",
        (),
        "Processes `chorus up` runs of each consumer (`--workers`), e.g. embed=2,cluster=2,normalizer=2; "
        "1 of each one not named.",
    )
    embedding_dim: int = setting("CHORUS_EMBEDDING_DIM", 384, "Dimension of the vector columns the migrations create.")
    prometheus: str = setting(
        "CHORUS_PROMETHEUS",
        "auto",
        "Whether `chorus up` starts Prometheus: auto (when the machine has the prometheus command) or off.",
    )
    prometheus_port: int = setting("CHORUS_PROMETHEUS_PORT", 9090, "Port of the Prometheus that `chorus up` starts.")
    demo_data: bool = setting("CHORUS_DEMO_DATA", True, "Whether `chorus up` sends the demo data through ingest.")
    admin_database_url: str = setting(
        "CHORUS_ADMIN_DATABASE_URL",
        "",
        "Owner URL for migrations when CHORUS_DATABASE_URL names an external Postgres.",
        secret=True,
    )


@dataclass(frozen=True)
class Endpoints:
    """Postgres and Kafka as the environment names them, or else the embedded stack's on 127.0.0.1:
    the one rule for `chorus up` and for the commands that only talk to them."""

    environ: Mapping[str, str]
    settings: StackSettings = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", load(StackSettings, self.environ))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Endpoints:
        return cls(dict(os.environ if environ is None else environ))

    @property
    def common(self) -> CommonSettings:
        return load(CommonSettings, self.environ)

    @property
    def external_database(self) -> bool:
        return "CHORUS_DATABASE_URL" in self.environ

    @property
    def external_kafka(self) -> bool:
        return "CHORUS_KAFKA_BOOTSTRAP" in self.environ

    @property
    def database_url(self) -> str:
        if self.external_database:
            return self.environ["CHORUS_DATABASE_URL"]
        user, port = SERVICE_DATABASE_USER, self.settings.postgres_port
        return f"postgresql://{user}:{user}@127.0.0.1:{port}/{EMBEDDED_DATABASE}"

    @property
    def admin_database_url(self) -> str:
        if self.settings.admin_database_url:
            return self.settings.admin_database_url
        if self.external_database:
            raise SettingsError(
                "CHORUS_DATABASE_URL names an external Postgres, so migrations need its owner: "
                "set CHORUS_ADMIN_DATABASE_URL to a URL of a role that may create tables"
            )
        return embedded_admin_url(self.settings.postgres_port)

    @property
    def replica_port(self) -> int:
        return self.settings.postgres_replica_port or self.settings.postgres_port + 1

    def replica_database_url(self) -> str:
        """The services' URL of the embedded Postgres's replica: the primary's role, the replica's port."""
        user = SERVICE_DATABASE_USER
        return f"postgresql://{user}:{user}@127.0.0.1:{self.replica_port}/{EMBEDDED_DATABASE}"

    @property
    def kafka_bootstrap(self) -> str:
        if self.external_kafka:
            return self.environ["CHORUS_KAFKA_BOOTSTRAP"]
        return ",".join(f"127.0.0.1:{port}" for port, _ in self.kafka_ports())

    def kafka_ports(self, brokers: int | None = None) -> list[tuple[int, int]]:
        """(port, controller port) of each embedded broker: two apart, from the configured ones."""
        count = self.settings.kafka_brokers if brokers is None else brokers
        first, controller = self.settings.kafka_port, self.settings.kafka_controller_port
        ports = [(first + 2 * node, controller + 2 * node) for node in range(count)]
        if len({port for pair in ports for port in pair}) < 2 * count:
            raise SettingsError(
                f"{count} Kafka brokers from CHORUS_KAFKA_PORT={first} and CHORUS_KAFKA_CONTROLLER_PORT={controller} "
                "would share ports (broker n takes each plus 2n): choose ports further apart"
            )
        return ports

    @property
    def workers(self) -> dict[str, int]:
        """Processes of each consumer service, by service name (ingest for the normalizer)."""
        return parse_workers(self.settings.workers)

    def service_port(self, service: str) -> int:
        port: int = load(SERVICE_SETTINGS[service], self.environ).port
        return port

    def service_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.service_port(service)}"


def parse_workers(entries: tuple[str, ...]) -> dict[str, int]:
    """{"embed": 2, ...} from ("embed=2", ...); every consumer service has at least 1."""
    counts = dict.fromkeys(WORKER_SERVICES.values(), 1)
    for entry in entries:
        name, _, number = entry.partition("=")
        name = name.strip()
        if name not in WORKER_SERVICES or not number.strip().isdigit() or int(number) < 1:
            raise SettingsError(
                f"CHORUS_WORKERS entry {entry!r} is not valid: expected NAME=COUNT with NAME one of "
                f"{', '.join(WORKER_SERVICES)} and COUNT a whole number of at least 1 (embed=2,cluster=2)"
            )
        counts[WORKER_SERVICES[name]] = int(number)
    return counts


def where(url: str) -> str:
    """host:port/database of a Postgres URL, without its user or password: fit for a message."""
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        return "the configured Postgres"
    return f"{parts.hostname or 'localhost'}:{port}{parts.path}"
