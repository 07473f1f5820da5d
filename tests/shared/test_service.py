import dataclasses
import importlib

import pytest
from fastapi.testclient import TestClient

from shared.settings import load
from shared.stack.local import SERVICE_SETTINGS
from shared.stack.processes import free_port


@pytest.mark.parametrize("service", list(SERVICE_SETTINGS))
def test_a_service_with_its_dependencies_is_ready(service: str, service_env: dict[str, str]) -> None:
    settings = load(SERVICE_SETTINGS[service], service_env)
    app = importlib.import_module(f"services.{service}.app").create_app(settings)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()) == (
            200,
            {"ready": True, "checks": {"postgres": True, "kafka": True}},
        )
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "chorus_service_info" in metrics.text


def test_a_service_whose_broker_is_gone_is_alive_but_not_ready(service_env: dict[str, str]) -> None:
    settings = load(SERVICE_SETTINGS["search"], service_env)
    app = importlib.import_module("services.search.app").create_app(settings)
    with TestClient(app) as client:
        gone = dataclasses.replace(settings, kafka_bootstrap=f"127.0.0.1:{free_port()}")
        app.state.resources.settings = gone
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()["checks"]) == (
            503,
            {"postgres": True, "kafka": False},
        )
