"""`chorus up --kafka-brokers 3 --workers ...` as a person runs it: every broker and worker runs, is
listed by `status` and stopped by `down`; a later `up` without the flags keeps them."""

from __future__ import annotations

from pathlib import Path

import httpx

from launcher.stack.processes import pid_alive
from tests.scale.cluster_state import free_port_block
from tests.stack import run_chorus


def _pids(home: Path) -> dict[str, int]:
    paths = [*(home / "run").glob("*.pid"), *(home / "kafka-cluster").glob("node-*/kafka.pid")]
    return {str(path.relative_to(home)): int(path.read_text()) for path in paths}


def test_up_runs_three_brokers_and_extra_workers_and_down_stops_them(stack_env: dict[str, str]) -> None:
    kafka = free_port_block(6)
    env = {**stack_env, "CHORUS_KAFKA_PORT": str(kafka), "CHORUS_KAFKA_CONTROLLER_PORT": str(kafka + 1),
           "CHORUS_DEMO_DATA": "false", "CHORUS_PROMETHEUS": "off"}  # fmt: skip
    home = Path(env["CHORUS_HOME"])
    pids: dict[str, int] = {}
    try:
        up = run_chorus("up", "--kafka-brokers", "3", "--workers", "embed=2,normalizer=2", env=env)
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{kafka},127.0.0.1:{kafka + 2},127.0.0.1:{kafka + 4}" in up.stdout
        status = run_chorus("status", env=env)
        assert status.returncode == 0, status.stdout
        lines = {line.split()[0]: line.split()[1:] for line in status.stdout.splitlines()}
        assert {"kafka-0", "kafka-1", "kafka-2", "embed-2", "ingest-2"} <= set(lines)
        assert "kafka" not in lines and "cluster-2" not in lines
        for worker in ("embed-2", "ingest-2"):
            running, metrics = lines[worker]
            assert running == "running"
            # Its own port: a Chorus service's metrics, not the first process's.
            assert metrics.endswith("/metrics") and f":{env['CHORUS_EMBED_PORT']}/" not in metrics
            assert "chorus_agent_up" in httpx.get(metrics, timeout=5).text
        pids = _pids(home)
        assert len(pids) == 4 + 2 + 3  # services, workers, brokers

        again = run_chorus("up", env=env)  # no flags: the cluster and the workers stay as they are
        assert again.returncode == 0, again.stderr
        assert _pids(home) == pids
    finally:
        down = run_chorus("down", env=env)
    assert down.returncode == 0, down.stderr
    assert "embed-2" in down.stdout and "kafka" in down.stdout
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert run_chorus("status", env=env).returncode == 3
