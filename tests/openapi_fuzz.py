"""Schemathesis against a service's /openapi.json, served over real HTTP on a port of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from launcher.stack.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
# Every answer must be one the OpenAPI declares: its status, content type, body schema and headers.
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "response_headers_conformance"
)


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """`app` under uvicorn until the block ends; its base URL, once it is ready."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
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
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def run_schemathesis(
    url: str, workdir: Path, *, headers: Mapping[str, str] = {}, hooks: str | None = None, at_least: int = 100
) -> str:
    """Run `st run` against `url`/openapi.json; fails on any answer the OpenAPI does not declare."""
    command = [
        str(Path(sys.executable).with_name("st")), "run", f"{url}/openapi.json",
        "--checks", CHECKS, "--max-examples", "25", "--seed", "20261122", "--generation-database", "none",
        "--request-timeout", "20",
    ]  # fmt: skip
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    if hooks is not None:
        env["SCHEMATHESIS_HOOKS"] = hooks
    result = subprocess.run(command, capture_output=True, text=True, timeout=480, cwd=workdir, env=env)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated is not None and int(generated.group(1)) >= at_least, result.stdout[-2000:]
    return result.stdout
