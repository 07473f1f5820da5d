"""`chorus up` and `chorus down` as a person runs them, on ports and a folder of the test's own."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shared.stack.local import read_env_file
from shared.stack.processes import free_port, pid_alive
from tests.conftest import REPO_ROOT


def _chorus(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
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
            **{f"CHORUS_{name}_PORT": str(free_port()) for name in ("SEARCH", "INGEST", "EMBED", "CLUSTER")},
        }
    )
    return env


def _recorded_pids(home: Path) -> list[int]:
    paths = [*(home / "run").glob("*.pid"), home / "kafka" / "kafka.pid"]
    pids = [int(path.read_text()) for path in paths if path.exists()]
    postmaster = home / "postgres" / "data" / "postmaster.pid"
    if postmaster.exists():
        pids.append(int(postmaster.read_text().split()[0]))
    return pids


def test_up_serves_every_service_and_down_leaves_nothing_running(stack_env: dict[str, str]) -> None:
    home = Path(stack_env["CHORUS_HOME"])
    try:
        first = _chorus("up", env=stack_env)
        assert first.returncode == 0, first.stderr
        demo = read_env_file(home / "demo.env")
        assert set(demo) == {
            "CHORUS_SEARCH_URL",
            "CHORUS_INGEST_URL",
            "CHORUS_DEMO_TENANT",
            "CHORUS_DEMO_API_KEY",
            "CHORUS_STREAMCHAT_API_KEY",
            "CHORUS_STREAMCHAT_API_SECRET",
            "CHORUS_TAVUS_TOKEN",
            "CHORUS_KAFKA_BOOTSTRAP",
            "CHORUS_DATABASE_URL",
        }
        assert first.stdout.strip().splitlines()[-1] == demo["CHORUS_DEMO_API_KEY"]
        for name in ("SEARCH", "INGEST", "EMBED", "CLUSTER"):
            ready = httpx.get(f"http://127.0.0.1:{stack_env[f'CHORUS_{name}_PORT']}/readyz", timeout=5)
            assert ready.status_code == 200, name
        pids = _recorded_pids(home)
        assert len(pids) == 6

        again = _chorus("up", env=stack_env)
        assert again.returncode == 0, again.stderr
        assert read_env_file(home / "demo.env") == demo
        assert _recorded_pids(home) == pids
        assert _chorus("status", env=stack_env).returncode == 0
    finally:
        down = _chorus("down", env=stack_env)
    assert down.returncode == 0, down.stderr
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert _chorus("status", env=stack_env).returncode == 3


def test_a_taken_port_is_named_with_its_fix(stack_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(stack_env["CHORUS_SEARCH_PORT"])))
        squatter.listen()
        result = _chorus("up", env=stack_env)
    assert result.returncode == 1
    port = stack_env["CHORUS_SEARCH_PORT"]
    assert result.stderr.strip() == (
        f"chorus: port {port} for the search service is already taken by another program; "
        f"stop that program or choose another port with CHORUS_SEARCH_PORT=<port>"
    )


def test_a_missing_jdk_is_named_with_its_fix(stack_env: dict[str, str], tmp_path: Path) -> None:
    # A PATH with python but without java: the broker cannot start, and the message says why.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    try:
        result = _chorus("up", env={**stack_env, "PATH": str(bin_dir)})
    finally:
        # Postgres started before the broker failed; stop it whatever the assertions say.
        stopped = _chorus("down", env=stack_env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "chorus: `java` was not found on PATH; the Kafka broker needs a JDK 17 "
        "(Debian: openjdk-17-jre-headless): install it and run again"
    )
    assert stopped.returncode == 0
