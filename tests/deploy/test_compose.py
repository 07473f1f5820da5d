"""docker-compose.yml is valid Compose, agrees with the services' settings, and its services scale."""

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from launcher.settings import SERVICE_SETTINGS, StackSettings
from launcher.topics import ALL_TOPICS
from shared.settings import CommonSettings, describe, load
from shared.tenants import API_KEY_PREFIX
from tests.conftest import REPO_ROOT, SERVICE_PASSWORD, SERVICE_USER, url_for
from tests.deploy.commands import chorus_or_python_commands, problem

COMPOSE = REPO_ROOT / "docker-compose.yml"
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
SETTINGS_CLASSES = (CommonSettings, StackSettings, *SERVICE_SETTINGS.values())
KNOWN_SETTINGS = {row[0] for cls in SETTINGS_CLASSES for row in describe(cls)}
# Consumers with no HTTP entry point for people: they publish no host port, so they can scale.
SCALED = ("embed", "cluster")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The file as Compose itself reads it: anchors merged, variables given their defaults."""
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "Debian's docker-compose is missing: `make system-deps` installs it"
    result = subprocess.run([docker_compose, "-f", str(COMPOSE), "config"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.mark.parametrize("service", list(SERVICE_SETTINGS))
def test_each_service_runs_from_the_one_image_on_its_port(resolved: dict[str, Any], service: str) -> None:
    definition = resolved["services"][service]
    settings = load(SERVICE_SETTINGS[service], {key: str(value) for key, value in definition["environment"].items()})
    assert definition["build"]["context"] == str(REPO_ROOT)
    assert definition["command"] == ["python", "-m", f"services.{service}"]
    assert str(definition["environment"][f"CHORUS_{service.upper()}_PORT"]) == str(settings.port)
    assert f"127.0.0.1:{settings.port}/readyz" in " ".join(definition["healthcheck"]["test"])
    assert settings.host == "0.0.0.0"
    assert definition["depends_on"] == {"bootstrap": {"condition": "service_completed_successfully"}}
    if service in SCALED:
        assert "ports" not in definition, f"{service} publishes a fixed host port, so --scale {service}=3 fails"
    else:
        assert definition["ports"] == [f"127.0.0.1:{settings.port}:{settings.port}/tcp"]


def test_every_published_port_is_on_loopback_unless_asked(resolved: dict[str, Any]) -> None:
    published = {name: d["ports"] for name, d in resolved["services"].items() if "ports" in d}
    assert set(published) == {"kafka", "ingest", "search", "prometheus", "grafana"}
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports), published


def test_kafka_has_a_listener_for_the_host(resolved: dict[str, Any]) -> None:
    environment = resolved["services"]["kafka"]["environment"]
    advertised = dict(item.split("://") for item in environment["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised == {"PLAINTEXT": "kafka:9092", "EXTERNAL": "localhost:9094"}
    assert "EXTERNAL://:9094" in environment["KAFKA_LISTENERS"].split(",")
    assert "EXTERNAL:PLAINTEXT" in environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    assert environment["KAFKA_INTER_BROKER_LISTENER_NAME"] == "PLAINTEXT"
    assert resolved["services"]["kafka"]["ports"] == ["127.0.0.1:9094:9094/tcp"]


def test_the_bootstrap_job_migrates_creates_topics_and_a_demo_key(resolved: dict[str, Any]) -> None:
    bootstrap = resolved["services"]["bootstrap"]
    commands = [command[:3] for command in chorus_or_python_commands(bootstrap["command"])]
    assert commands == [
        ["chorus", "migrate"],
        ["chorus", "topics"],
        ["chorus", "tenants", "add"],
        ["chorus", "keys", "create"],
    ]
    assert "CHORUS_ADMIN_DATABASE_URL" in bootstrap["environment"]
    assert "restart" not in bootstrap, "a job that restarts forever would never complete"


def test_every_command_names_a_real_module_or_chorus_command(resolved: dict[str, Any]) -> None:
    commands = [
        command
        for definition in resolved["services"].values()
        if isinstance(definition.get("command"), list)
        for command in chorus_or_python_commands(definition["command"])
    ]
    assert len(commands) == 8  # four services, four bootstrap steps
    assert [problem(command) for command in commands] == [None] * len(commands)


def test_prometheus_finds_every_replica_by_dns(resolved: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = config["scrape_configs"]
    assert "static_configs" not in job
    discovered = {entry["names"][0]: entry["port"] for entry in job["dns_sd_configs"]}
    ports = {
        service: load(SERVICE_SETTINGS[service], resolved["services"][service]["environment"]).port
        for service in SERVICE_SETTINGS
    }
    assert discovered == ports
    assert all(entry["type"] == "A" for entry in job["dns_sd_configs"])
    assert {"source_labels": ["__meta_dns_name"], "target_label": "service"} in job["relabel_configs"]


def test_the_prometheus_configuration_loads() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "Debian's prometheus (with promtool) is missing: `make system-deps` installs it"
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_chorus_variable_in_compose_is_a_documented_setting(compose: dict[str, Any]) -> None:
    used = {
        name
        for definition in compose["services"].values()
        for name in (definition.get("environment") or {})
        if name.startswith("CHORUS_")
    }
    assert used - KNOWN_SETTINGS == set()


def test_every_service_has_a_healthcheck_or_runs_once(compose: dict[str, Any]) -> None:
    without = [name for name, definition in compose["services"].items() if "healthcheck" not in definition]
    assert without == ["bootstrap"]
    assert set(compose["volumes"]) == {"kafka-data", "postgres-data", "prometheus-data", "grafana-data"}


async def test_the_bootstrap_command_sets_up_an_empty_database_and_runs_again(
    resolved: dict[str, Any], postgres_admin_url: str, kafka_bootstrap: str
) -> None:
    bootstrap = resolved["services"]["bootstrap"]
    name = f"chorus_bootstrap_{uuid.uuid4().hex[:12]}"
    prefix = f"test-{uuid.uuid4().hex[:12]}."
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHORUS_")}
    env.update({key: str(value) for key, value in bootstrap["environment"].items()})
    # The compose hosts (kafka, postgres) become the test's; everything else is the file's.
    env.update(
        CHORUS_KAFKA_BOOTSTRAP=kafka_bootstrap,
        CHORUS_DATABASE_URL=url_for(postgres_admin_url, name, SERVICE_USER, SERVICE_PASSWORD),
        CHORUS_ADMIN_DATABASE_URL=url_for(postgres_admin_url, name),
        CHORUS_TOPIC_PREFIX=prefix,
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    admin = await asyncpg.connect(postgres_admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        runs = [
            await asyncio.to_thread(
                subprocess.run, bootstrap["command"], env=env, capture_output=True, text=True, timeout=300
            )
            for _ in range(2)
        ]
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.splitlines()[-1].startswith(API_KEY_PREFIX), run.stdout
    assert "tenant demo exists" not in runs[0].stdout and "tenant demo exists" in runs[1].stdout
    assert runs[0].stdout.splitlines()[-1] != runs[1].stdout.splitlines()[-1]
    kafka = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await kafka.start()
    try:
        created = {topic for topic in await kafka.list_topics() if topic.startswith(prefix)}
    finally:
        await kafka.close()
    assert created == {topic.full_name(prefix) for topic in ALL_TOPICS}
