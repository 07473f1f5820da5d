"""Schemathesis against the search service's /openapi.json, served over real HTTP, with a valid key."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from launcher.stack.processes import free_port
from services.search.app import create_app
from services.search.settings import SearchSettings
from shared.settings import load
from tests.services.search.conftest import Search

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture
def served(search: Search, services: dict[str, str]) -> Iterator[str]:
    """The search app on a port of its own, over the demo data `search` loaded."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(load(SearchSettings, services)), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def test_generated_requests_get_no_server_error_and_no_schema_violation(
    served: str, search: Search, tmp_path: Path
) -> None:
    command = [
        str(Path(sys.executable).with_name("st")), "run", f"{served}/openapi.json",
        "-H", f"Authorization: Bearer {search.ingest.tenant.api_key}",
        "--checks", CHECKS, "--max-examples", "25", "--seed", "20261122", "--generation-database", "none",
        "--request-timeout", "20",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=480, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated is not None and int(generated.group(1)) >= 100, result.stdout[-2000:]
