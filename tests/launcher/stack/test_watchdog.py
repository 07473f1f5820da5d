"""What a test run starts dies with it, even when pytest itself is killed with SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.stack.processes import pid_alive, wait_until
from launcher.stack.watchdog import started_at

REPO_ROOT = Path(__file__).resolve().parents[3]
WATCHED_RUN = Path(__file__).with_name("watched_run.py")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, IndexError):
            if entry.isdigit() and int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def described(pid: int) -> str:
    try:
        return f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"{pid}: gone"


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_killed_pytest_leaves_no_postgres_and_no_child_behind(tmp_path: Path) -> None:
    report = tmp_path / "pids.json"
    # The inner run starts its own embedded Postgres: no shared server, no Docker.
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHORUS_")}
    env.update({"CHORUS_WATCHED_PIDS": str(report), "DOCKER_HOST": "tcp://127.0.0.1:9"})
    with open(tmp_path / "inner.log", "wb") as log:
        inner = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "inner"),
             str(WATCHED_RUN)],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    pids: dict[str, int] = {}
    started: dict[int, int | None] = {}
    try:
        assert wait_until(lambda: report.exists() or inner.poll() is not None, timeout=90), "the inner run hung"
        assert report.exists(), (tmp_path / "inner.log").read_text()[-3000:]
        pids = json.loads(report.read_text())
        started = {pid: started_at(pid) for pid in pids.values()}
        backends = children_of(pids["postmaster"])
        watched = [*pids.values(), *backends]
        assert backends and all(pid_alive(pid) for pid in watched)

        inner.send_signal(signal.SIGKILL)
        inner.wait()
        assert wait_until(lambda: not any(pid_alive(pid) for pid in watched), timeout=15), [
            described(pid) for pid in watched if pid_alive(pid)
        ]
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()
        for name, pid in pids.items():
            if started[pid] is None or started_at(pid) != started[pid]:
                continue  # gone, as it should be (the pid may belong to another process by now)
            with contextlib.suppress(ProcessLookupError):
                # SIGQUIT: Postgres's immediate shutdown, which still removes its shared memory.
                os.kill(pid, signal.SIGQUIT if name == "postmaster" else signal.SIGKILL)
