"""`chorus` as a person runs it, on ports and a folder of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.stack.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_chorus(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launcher.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHORUS_")}
    env.update(
        {
            "CHORUS_HOME": str(tmp_path / "home"),
            "CHORUS_POSTGRES_PORT": str(free_port()),
            "CHORUS_KAFKA_PORT": str(free_port()),
            "CHORUS_KAFKA_CONTROLLER_PORT": str(free_port()),
            "CHORUS_TOPIC_PARTITIONS": "2",
            "CHORUS_PROMETHEUS_PORT": str(free_port()),
            **{f"CHORUS_{name}_PORT": str(free_port()) for name in ("SEARCH", "INGEST", "EMBED", "CLUSTER")},
        }
    )
    return env
