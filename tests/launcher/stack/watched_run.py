"""The test that test_watchdog.py runs in a pytest of its own and then kills: it starts processes and sleeps.

Not named test_*.py: it runs only when named on the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from launcher.stack.processes import spawn


def test_start_processes_then_sleep(postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.getbasetemp()
    # pytest links "postgrescurrent" to the newest "postgresN" folder: one server, found twice.
    [postmaster_pid] = {path.resolve() for path in base.glob("postgres*/data/postmaster.pid")}
    detached = spawn(["sleep", "600"], log_path=base / "sleep.log", pid_path=base / "sleep.pid")
    child = subprocess.Popen(["sleep", "600"])
    pids = {"postmaster": int(postmaster_pid.read_text().split()[0]), "detached": detached, "child": child.pid}
    Path(os.environ["CHORUS_WATCHED_PIDS"]).write_text(json.dumps(pids))
    time.sleep(600)
