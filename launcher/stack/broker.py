"""An Apache Kafka broker in KRaft mode, run from the Maven Central jars pinned in deploy/kafka."""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template

from launcher.stack.processes import (
    StackError,
    port_is_free,
    require_free_port,
    running_pid,
    spawn,
    stop,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_DEPLOY = REPO_ROOT / "deploy" / "kafka"
LIBS = KAFKA_DEPLOY / "target" / "libs"


_TOOLS = {"java": "a JDK 17 (Debian: openjdk-17-jre-headless)", "mvn": "Maven (Debian: maven)"}


def require_tool(tool: str) -> None:
    """Fail with one sentence when `tool` (java or mvn) is not on PATH."""
    if shutil.which(tool) is None:
        raise StackError(
            f"`{tool}` was not found on PATH; the Kafka broker needs {_TOOLS[tool]}: install it and run again"
        )


def fetch_jars() -> Path:
    """Resolve the broker's jars from Maven Central once; later calls find them in place."""
    if any(LIBS.glob("kafka_2.13-*.jar")):
        return LIBS
    require_tool("java")
    require_tool("mvn")
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(KAFKA_DEPLOY / "pom.xml"), "dependency:copy-dependencies"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(
            "Maven could not fetch the Kafka jars from Maven Central "
            f"(mvn exited {result.returncode}); check the network and ~/.m2/settings.xml:\n"
            + (result.stdout + result.stderr)[-2000:]
        )
    return LIBS


@dataclass(frozen=True)
class KafkaBroker:
    """A one-node broker and controller whose data and log live in `home`."""

    home: Path
    port: int
    controller_port: int
    partitions: int = 6
    heap: str = "512m"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_path(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def log_path(self) -> Path:
        return self.home / "kafka.out"

    def start(self, timeout: float = 90.0) -> None:
        """Format storage on first use, start the broker and wait until it listens."""
        if running_pid(self.pid_path) is not None:
            return
        require_free_port(self.port, "the Kafka broker", "CHORUS_KAFKA_PORT")
        require_free_port(self.controller_port, "the Kafka controller", "CHORUS_KAFKA_CONTROLLER_PORT")
        libs = fetch_jars()
        require_tool("java")
        config = self._write_config()
        if not (self.home / "data" / "meta.properties").exists():
            # One argument, `--cluster-id=...`: an id may start with "-", which would read as an option.
            self._java(libs, "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}", "-c", str(config))
        spawn(
            [
                "java",
                f"-Xmx{self.heap}",
                f"-Xms{self.heap}",
                "-XX:+UseG1GC",
                f"-Dlog4j.configuration=file:{KAFKA_DEPLOY / 'log4j.properties'}",
                f"-Dkafka.logs.dir={self.home}",
                "-cp",
                f"{libs}/*",
                "kafka.Kafka",
                str(config),
            ],
            log_path=self.log_path,
            pid_path=self.pid_path,
        )
        if not wait_until(
            lambda: not port_is_free(self.port) or running_pid(self.pid_path) is None,
            timeout=timeout,
        ):
            raise StackError(
                f"the Kafka broker did not listen on {self.port} within {timeout:.0f}s; see {self.log_path}"
            )
        if running_pid(self.pid_path) is None:
            raise StackError(f"the Kafka broker exited at start; see {self.home / 'kafka.log'} and {self.log_path}")

    def stop(self) -> bool:
        """Stop the broker cleanly (it flushes its logs on SIGTERM)."""
        return stop(self.pid_path, timeout=60.0)

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        template = Template((KAFKA_DEPLOY / "server.properties").read_text())
        config = self.home / "server.properties"
        config.write_text(
            template.substitute(
                port=self.port,
                controller_port=self.controller_port,
                data_dir=self.home / "data",
                partitions=self.partitions,
            )
        )
        return config

    def _java(self, libs: Path, main: str, *args: str) -> None:
        result = subprocess.run(
            ["java", "-Dlog4j.configuration=file:/dev/null", "-cp", f"{libs}/*", main, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"{main} {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")


def _cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
