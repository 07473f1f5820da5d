import asyncio
import contextlib
import dataclasses
import importlib
from typing import Any

import pytest
from fastapi.testclient import TestClient

from launcher.settings import SERVICE_SETTINGS
from launcher.stack.processes import free_port
from shared.settings import load


@pytest.mark.parametrize("service", list(SERVICE_SETTINGS))
def test_a_service_with_its_dependencies_is_ready(service: str, service_env: dict[str, str]) -> None:
    settings = load(SERVICE_SETTINGS[service], service_env)
    app = importlib.import_module(f"services.{service}.app").create_app(settings)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        expected = {"postgres": True, "kafka": True} | (
            {"agents": True} if service in ("ingest", "embed", "cluster") else {}
        )
        assert (ready.status_code, ready.json()) == (200, {"ready": True, "checks": expected})
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


def test_a_service_whose_agent_stopped_is_not_ready(service_env: dict[str, str]) -> None:
    settings = load(SERVICE_SETTINGS["ingest"], service_env)
    app = importlib.import_module("services.ingest.app").create_app(settings)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        client.portal.call(_stop_first_agent, app)
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()["checks"]["agents"]) == (503, False)


async def _stop_first_agent(app: Any) -> None:
    task = app.state.resources.background[0]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
