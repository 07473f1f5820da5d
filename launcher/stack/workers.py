"""Extra processes of the consumer services (`chorus up --workers`), each with an HTTP and metrics port of its own."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

from launcher.stack.processes import free_port, port_is_free, running_pid, spawn, stop

# `embed-2`: the second process of embed (the first is `embed`, on the service's own port).
WORKER_NAME = re.compile(r"^(ingest|embed|cluster)-(\d+)$")


def worker_name(service: str, number: int) -> str:
    return f"{service}-{number}"


def worker_service(name: str) -> str:
    """The service a worker's name belongs to: `embed` for `embed-2`."""
    match = WORKER_NAME.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a worker's name")
    return match.group(1)


class Workers:
    """Worker processes whose pid, port and log files live under `home`.

    A worker runs the service's own module: it joins the service's consumer groups and takes its
    share of the partitions, and serves /metrics and /readyz on a port the kernel picked at its
    first start (kept in `run/NAME.port`, reused when the worker is started again).
    """

    def __init__(self, home: Path) -> None:
        self.run = home / "run"
        self.logs = home / "logs"

    def pid_path(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def port(self, name: str) -> int | None:
        try:
            return int((self.run / f"{name}.port").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def running(self, name: str) -> bool:
        return running_pid(self.pid_path(name)) is not None

    def start(self, service: str, number: int, env: Mapping[str, str]) -> str:
        """Start worker `number` (2 and up) of `service` unless it runs; returns its name."""
        name = worker_name(service, number)
        if self.running(name):
            return name
        port = self.port(name)
        if port is None or not port_is_free(port):
            port = free_port()
            self.run.mkdir(parents=True, exist_ok=True)
            (self.run / f"{name}.port").write_text(str(port))
        worker_env = {**env, f"CHORUS_{service.upper()}_PORT": str(port)}
        if service == "ingest":
            # One process posts replies and relays the outbox (the first ingest); a worker normalizes.
            worker_env["CHORUS_INGEST_DELIVER_REPLIES"] = "false"
            worker_env["CHORUS_INGEST_NORMALIZE"] = "true"
        spawn(
            [sys.executable, "-m", f"services.{service}"],
            log_path=self.log_path(name),
            pid_path=self.pid_path(name),
            env=worker_env,
        )
        return name

    def start_next(self, service: str, env: Mapping[str, str]) -> str:
        """Add one worker of `service`, numbered after every one started before (a scale-up)."""
        numbers = [int(match.group(2)) for name in self.names() if (match := WORKER_NAME.match(name))
                   and match.group(1) == service]  # fmt: skip
        return self.start(service, max(numbers, default=1) + 1, env)

    def names(self) -> list[str]:
        """Every worker with a pid file (running, or killed without `chorus down`), in order."""
        found = [path.stem for path in self.run.glob("*.pid") if WORKER_NAME.match(path.stem)]
        return sorted(found, key=lambda name: (worker_service(name), int(name.rsplit("-", 1)[1])))

    def stop(self, name: str) -> bool:
        return stop(self.pid_path(name))

    def stop_all(self) -> list[str]:
        return [name for name in self.names() if self.stop(name)]
