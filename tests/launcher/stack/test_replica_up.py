"""`chorus up --postgres-replica` as a person runs it: a streaming replica on its own port that
search reads, listed by `status`, stopped by `down`."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from bench.webhooks import direct_message, webhook_headers
from launcher.settings import embedded_admin_url
from launcher.stack.local import read_env_file
from launcher.stack.processes import free_port, pid_alive
from tests.stack import run_chorus


def _postmaster(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def _send_message(demo: dict[str, str], text: str) -> None:
    message_id = f"replica-{uuid.uuid4().hex}"
    body = json.dumps(direct_message("replica-creator", "replica-fan", message_id, text, datetime.now(UTC))).encode()
    headers = webhook_headers(body, demo["CHORUS_STREAMCHAT_API_KEY"], demo["CHORUS_STREAMCHAT_API_SECRET"], message_id)
    answer = httpx.post(f"{demo['CHORUS_INGEST_URL']}/webhooks/streamchat", content=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text


def _found_by_search(demo: dict[str, str], word: str, within: float = 40.0) -> bool:
    deadline = time.monotonic() + within
    headers = {"Authorization": f"Bearer {demo['CHORUS_DEMO_API_KEY']}"}
    while time.monotonic() < deadline:
        params = {"q": word, "mode": "keyword"}
        answer = httpx.get(f"{demo['CHORUS_SEARCH_URL']}/v1/search", params=params, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        if word in answer.text:
            return True
        time.sleep(0.3)
    return False


async def _replication(primary_port: int, replica_port: int) -> tuple[int, bool, int]:
    """(streaming standbys of the primary, the replica in recovery, search's connections to the replica)."""
    primary = await asyncpg.connect(embedded_admin_url(primary_port, "postgres"))
    replica = await asyncpg.connect(embedded_admin_url(replica_port, "postgres"))
    try:
        return (
            await primary.fetchval("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"),
            await replica.fetchval("SELECT pg_is_in_recovery()"),
            await replica.fetchval("SELECT count(*) FROM pg_stat_activity WHERE usename = 'chorus_app'"),
        )
    finally:
        await primary.close()
        await replica.close()


def test_up_starts_a_replica_that_search_reads_and_down_stops_it(stack_env: dict[str, str]) -> None:
    replica_port = free_port()
    env = {**stack_env, "CHORUS_POSTGRES_REPLICA_PORT": str(replica_port), "CHORUS_POSTGRES_SHARED_BUFFERS": "64MB",
           "CHORUS_DEMO_DATA": "false", "CHORUS_PROMETHEUS": "off"}  # fmt: skip
    home = Path(env["CHORUS_HOME"])
    pids: list[int] = []
    try:
        up = run_chorus("up", "--postgres-replica", env=env)
        assert up.returncode == 0, up.stderr
        assert f"replica  127.0.0.1:{replica_port}" in up.stdout
        pids = [_postmaster(home / "postgres" / "data"), _postmaster(home / "postgres-replica" / "data")]
        demo = read_env_file(home / "demo.env")
        assert demo["CHORUS_SEARCH_DATABASE_URL"].endswith(f"@127.0.0.1:{replica_port}/chorus")
        ready = httpx.get(f"{demo['CHORUS_SEARCH_URL']}/readyz", timeout=5).json()
        assert ready["checks"]["postgres_replica"] is True

        word = f"replicaword{uuid.uuid4().hex[:10]}"
        _send_message(demo, f"does the {word} reach the replica")
        assert _found_by_search(demo, word)
        streaming, in_recovery, search_connections = asyncio.run(
            _replication(int(env["CHORUS_POSTGRES_PORT"]), replica_port)
        )
        assert (streaming, in_recovery) == (1, True)
        assert search_connections >= 1  # search's read pool (and nothing else of Chorus) is on the replica

        # Without the flag: the replica on disk is the stack's, kept as it runs.
        again = run_chorus("up", env=env)
        assert again.returncode == 0, again.stderr
        assert _postmaster(home / "postgres-replica" / "data") == pids[1]
        assert read_env_file(home / "demo.env")["CHORUS_SEARCH_DATABASE_URL"] == demo["CHORUS_SEARCH_DATABASE_URL"]
        status = run_chorus("status", env=env)
        assert status.returncode == 0, status.stdout
        assert "postgres-replica running" in " ".join(status.stdout.split())
    finally:
        down = run_chorus("down", env=env)
    assert down.returncode == 0, down.stderr
    assert "postgres-replica" in down.stdout
    assert [pid for pid in pids if pid_alive(pid)] == []


def test_a_taken_replica_port_is_named_with_its_fix(stack_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_chorus("up", "--postgres-replica", env={**stack_env, "CHORUS_POSTGRES_REPLICA_PORT": str(port)})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"chorus: port {port} for the Postgres replica is already taken by another program; "
        f"stop that program or choose another port with CHORUS_POSTGRES_REPLICA_PORT=<port>"
    )
    assert not (Path(stack_env["CHORUS_HOME"]) / "postgres" / "data").exists()  # refused before anything started
