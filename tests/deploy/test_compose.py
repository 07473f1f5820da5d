"""docker-compose.yml is valid Compose and agrees with the services' settings."""

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from launcher.stack.local import SERVICE_SETTINGS, StackSettings
from shared.settings import CommonSettings, describe, load
from tests.conftest import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
SETTINGS_CLASSES = (CommonSettings, StackSettings, *SERVICE_SETTINGS.values())
KNOWN_SETTINGS = {row[0] for cls in SETTINGS_CLASSES for row in describe(cls)}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_compose_file_is_valid() -> None:
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "Debian's docker-compose is missing: `make system-deps` installs it"
    result = subprocess.run([docker_compose, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("service", list(SERVICE_SETTINGS))
def test_each_service_runs_from_the_one_image_on_its_port(compose: dict[str, Any], service: str) -> None:
    definition = compose["services"][service]
    settings = load(SERVICE_SETTINGS[service], {key: str(value) for key, value in definition["environment"].items()})
    assert definition["build"] == "."
    assert definition["command"] == ["python", "-m", f"services.{service}"]
    assert definition["ports"] == [f"{settings.port}:{settings.port}"]
    assert str(definition["environment"][f"CHORUS_{service.upper()}_PORT"]) == str(settings.port)
    assert f"127.0.0.1:{settings.port}/readyz" in " ".join(definition["healthcheck"]["test"])
    assert settings.host == "0.0.0.0"


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
    assert without == ["init"]
    assert set(compose["volumes"]) == {"kafka-data", "postgres-data", "prometheus-data", "grafana-data"}
