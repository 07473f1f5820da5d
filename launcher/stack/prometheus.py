"""Prometheus from the machine's own package (Debian's `prometheus`), scraping the services of `chorus up`."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from launcher.stack.processes import running_pid, spawn, stop

ALERT_RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


class LocalPrometheus:
    """One Prometheus whose configuration and data live in `home`, listening on `port`, scraping
    `service_ports` (a service's or a worker's name, such as `embed-2`, to its port)."""

    def __init__(self, home: Path, port: int, service_ports: Mapping[str, int]) -> None:
        self.home = home
        self.port = port
        self.service_ports = dict(service_ports)
        self.pid_path = home / "prometheus.pid"
        self.log_path = home / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        """The scrape configuration of deploy/prometheus/prometheus.yml, with this machine's ports."""
        # A worker (`embed-2`) is its service's: dashboards sum by `service` across `instance`s.
        targets = "\n".join(
            f'      - targets: ["127.0.0.1:{port}"]\n        labels: {{service: {name.partition("-")[0]}}}'
            for name, port in self.service_ports.items()
        )
        return (
            "# Written by `chorus up`: the scrape configuration of deploy/prometheus with local ports.\n"
            "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\n"
            f"rule_files:\n  - {ALERT_RULES}\n\n"
            f"scrape_configs:\n  - job_name: chorus\n    static_configs:\n{targets}\n"
        )

    def start(self, binary: str, timeout: float = 60.0) -> None:
        if running_pid(self.pid_path) is not None:
            return
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "prometheus.yml"
        config.write_text(self.config())
        spawn(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.home / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            log_path=self.log_path,
            pid_path=self.pid_path,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if running_pid(self.pid_path) is None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"Prometheus did not get ready; see {self.log_path}")

    def stop(self) -> bool:
        return stop(self.pid_path)
