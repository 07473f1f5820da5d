"""A three-broker KRaft cluster on loopback, from the jars the embedded broker runs (deploy/kafka)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from launcher.stack.broker import KAFKA_DEPLOY, fetch_jars
from launcher.stack.processes import free_port, port_is_free, running_pid, spawn, wait_until

# Every node is broker and controller; topics keep three copies and accept a write once two have it,
# as the Strimzi cluster in deploy/k8s does.
CONFIG = """\
process.roles=broker,controller
node.id={node}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
"""


@dataclass
class KafkaCluster:
    """Three nodes under `home`, on ports the kernel picked (never the developers' 9092/19092)."""

    home: Path
    heap: str = "256m"
    ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    controller_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def node_home(self, node: int) -> Path:
        return self.home / f"node-{node}"

    def start(self, timeout: float = 120.0) -> None:
        libs = fetch_jars()
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        voters = ",".join(f"{n + 1}@127.0.0.1:{port}" for n, port in enumerate(self.controller_ports))
        for node in range(3):
            home = self.node_home(node)
            home.mkdir(parents=True, exist_ok=True)
            config = home / "server.properties"
            config.write_text(
                CONFIG.format(
                    node=node + 1,
                    voters=voters,
                    port=self.ports[node],
                    controller_port=self.controller_ports[node],
                    data_dir=home / "data",
                )
            )
            subprocess.run(
                ["java", "-Dlog4j.configuration=file:/dev/null", "-cp", f"{libs}/*", "kafka.tools.StorageTool",
                 "format", f"--cluster-id={cluster_id}", "-c", str(config)],
                check=True,
                capture_output=True,
            )  # fmt: skip
        for node in range(3):
            self.start_node(node, wait=False)
        for node in range(3):
            self._wait_listening(node, timeout)

    def start_node(self, node: int, *, wait: bool = True, timeout: float = 120.0) -> None:
        home = self.node_home(node)
        spawn(
            [
                "java",
                f"-Xmx{self.heap}",
                f"-Xms{self.heap}",
                "-XX:+UseSerialGC",  # three JVMs share two cores; G1's threads would crowd them
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j.configuration=file:{KAFKA_DEPLOY / 'log4j.properties'}",
                f"-Dkafka.logs.dir={home}",
                "-cp",
                f"{fetch_jars()}/*",
                "kafka.Kafka",
                str(home / "server.properties"),
            ],
            log_path=home / "kafka.out",
            pid_path=home / "kafka.pid",
        )
        if wait:
            self._wait_listening(node, timeout)

    def kill_node(self, node: int) -> None:
        """SIGKILL: no flush, no controlled shutdown, as a machine that loses power."""
        pid = running_pid(self.node_home(node) / "kafka.pid")
        assert pid is not None, f"node {node} is not running"
        os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: running_pid(self.node_home(node) / "kafka.pid") is None, timeout=10)

    def stop(self) -> None:
        """SIGKILL every node at once: stopped one by one, the last waits for a quorum that is gone."""
        for node in range(3):
            if running_pid(self.node_home(node) / "kafka.pid") is not None:
                self.kill_node(node)

    def _wait_listening(self, node: int, timeout: float) -> None:
        pid_path = self.node_home(node) / "kafka.pid"
        listening = wait_until(
            lambda: not port_is_free(self.ports[node]) or running_pid(pid_path) is None, timeout=timeout
        )
        if not listening or running_pid(pid_path) is None:
            log = (self.node_home(node) / "kafka.out").read_text()[-2000:]
            raise RuntimeError(f"Kafka node {node} did not start:\n{log}")
