"""`chorus up` and `chorus down` as a person runs them, on ports and a folder of the test's own."""

import socket
import sys
from pathlib import Path

import httpx

from launcher.stack.local import read_env_file
from launcher.stack.processes import pid_alive
from tests.stack import run_chorus


def _recorded_pids(home: Path) -> list[int]:
    paths = [*(home / "run").glob("*.pid"), home / "kafka" / "kafka.pid", home / "prometheus" / "prometheus.pid"]
    pids = [int(path.read_text()) for path in paths if path.exists()]
    postmaster = home / "postgres" / "data" / "postmaster.pid"
    if postmaster.exists():
        pids.append(int(postmaster.read_text().split()[0]))
    return pids


def test_up_serves_every_service_and_down_leaves_nothing_running(stack_env: dict[str, str]) -> None:
    home = Path(stack_env["CHORUS_HOME"])
    try:
        first = run_chorus("up", env=stack_env)
        assert first.returncode == 0, first.stderr
        demo = read_env_file(home / "demo.env")
        assert set(demo) - {"CHORUS_PROMETHEUS_URL"} == {
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
        # Four services, Kafka and Postgres; and Prometheus where the machine has it (`make test` installs it).
        assert len(pids) == 6 + ("CHORUS_PROMETHEUS_URL" in demo)

        again = run_chorus("up", env=stack_env)
        assert again.returncode == 0, again.stderr
        assert read_env_file(home / "demo.env") == demo
        assert _recorded_pids(home) == pids
        assert run_chorus("status", env=stack_env).returncode == 0
    finally:
        down = run_chorus("down", env=stack_env)
    assert down.returncode == 0, down.stderr
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert run_chorus("status", env=stack_env).returncode == 3


def test_a_taken_port_is_named_with_its_fix(stack_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(stack_env["CHORUS_SEARCH_PORT"])))
        squatter.listen()
        result = run_chorus("up", env=stack_env)
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
        result = run_chorus("up", env={**stack_env, "PATH": str(bin_dir)})
    finally:
        # Postgres started before the broker failed; stop it whatever the assertions say.
        stopped = run_chorus("down", env=stack_env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "chorus: `java` was not found on PATH; the Kafka broker needs a JDK 17 "
        "(Debian: openjdk-17-jre-headless): install it and run again"
    )
    assert stopped.returncode == 0
