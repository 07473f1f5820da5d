"""The four services as processes of a test (`python -m services.<name>`), over its Kafka and Postgres."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from launcher.stack.processes import free_port
from tests.conftest import REPO_ROOT

SERVICES = ("ingest", "embed", "cluster", "search")


@dataclass
class Pipeline:
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]]
    logs: Path

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def log_tails(self, lines: int = 30) -> str:
        """The last lines each service wrote, for a failure's message."""
        tails = []
        for name in self.processes:
            text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(tails)


@contextmanager
def running_pipeline(env: Mapping[str, str], logs: Path, *, within: float = 180.0) -> Iterator[Pipeline]:
    """Start the four services with `env` (and their ports); yield once every one is ready; stop them all."""
    logs.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in SERVICES}
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("CHORUS_")}
    process_env = {**inherited, **env, **{f"CHORUS_{name.upper()}_PORT": str(port) for name, port in ports.items()}}
    pipeline = Pipeline(ports, {}, logs)
    try:
        for name in SERVICES:
            with open(logs / f"{name}.log", "wb") as log:
                pipeline.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=process_env, cwd=REPO_ROOT, start_new_session=True,
                )  # fmt: skip
        _wait_until_ready(pipeline, within)
        yield pipeline
    finally:
        _stop(pipeline.processes.values())


def _wait_until_ready(pipeline: Pipeline, within: float) -> None:
    deadline = time.monotonic() + within
    waiting = set(SERVICES)
    with httpx.Client(timeout=2) as client:
        while waiting:
            for name in sorted(waiting):
                code = pipeline.processes[name].poll()
                if code is not None:
                    raise AssertionError(f"{name} exited with {code} while starting:\n{pipeline.log_tails()}")
                with suppress(httpx.HTTPError):
                    if client.get(f"{pipeline.url(name)}/readyz").status_code == 200:
                        waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                raise AssertionError(f"{sorted(waiting)} not ready after {within:.0f} s:\n{pipeline.log_tails()}")
            time.sleep(0.25)


def _stop(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    running = list(processes)
    for process in running:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in running:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
