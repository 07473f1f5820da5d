"""A KRaft cluster of several brokers on loopback, from the jars the one-broker stack runs (deploy/kafka)."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from launcher.stack.broker import KAFKA_DEPLOY, fetch_jars, require_tool
from launcher.stack.processes import (
    StackError,
    free_port,
    pid_alive,
    port_is_free,
    require_free_port,
    running_pid,
    spawn,
    wait_until,
)

# Every node is broker and controller. With three or more, topics keep three copies and accept a
# write once two have it (as the Strimzi cluster in deploy/k8s does): one node may be lost.
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
num.partitions={partitions}
default.replication.factor={replicas}
min.insync.replicas={min_in_sync}
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions={partitions}
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_in_sync}
transaction.state.log.num.partitions={partitions}
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
"""


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers`: three copies at most,
    and one copy may be missing while writes go on."""
    replicas = min(brokers, 3)
    return replicas, max(replicas - 1, 1)


@dataclass(frozen=True)
class KafkaCluster:
    """Nodes `node-0`, `node-1`, ... under `home`; node n listens on `ports[n]` and `controller_ports[n]`."""

    home: Path
    ports: tuple[int, ...]
    controller_ports: tuple[int, ...]
    partitions: int = 3
    heap: str = "256m"

    @classmethod
    def on_free_ports(cls, home: Path, brokers: int = 3, partitions: int = 3) -> KafkaCluster:
        """A cluster on ports the kernel says are free (tests: never the developers' 9092/19092)."""
        ports = tuple(free_port() for _ in range(brokers))
        return cls(home, ports, tuple(free_port() for _ in range(brokers)), partitions=partitions)

    @property
    def size(self) -> int:
        return len(self.ports)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def node_home(self, node: int) -> Path:
        return self.home / f"node-{node}"

    def pid_path(self, node: int) -> Path:
        return self.node_home(node) / "kafka.pid"

    def running(self, node: int) -> bool:
        return running_pid(self.pid_path(node)) is not None

    def start(self, timeout: float = 120.0) -> None:
        """Format the nodes on first use, start those not running and wait until all listen."""
        stopped = [node for node in range(self.size) if not self.running(node)]
        if not stopped:
            return
        for node in stopped:
            require_free_port(self.ports[node], f"Kafka broker {node}", "CHORUS_KAFKA_PORT")
            require_free_port(self.controller_ports[node], f"Kafka controller {node}", "CHORUS_KAFKA_CONTROLLER_PORT")
        self._format()
        for node in stopped:
            self.start_node(node, wait=False)
        for node in stopped:
            self._wait_listening(node, timeout)

    def start_node(self, node: int, *, wait: bool = True, timeout: float = 120.0) -> None:
        """Start one formatted node (after `kill_node`, say)."""
        home = self.node_home(node)
        spawn(
            [
                "java",
                f"-Xmx{self.heap}",
                f"-Xms{self.heap}",
                "-XX:+UseSerialGC",  # several JVMs share few cores; G1's threads would crowd them
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j.configuration=file:{KAFKA_DEPLOY / 'log4j.properties'}",
                f"-Dkafka.logs.dir={home}",
                "-cp",
                f"{fetch_jars()}/*",
                "kafka.Kafka",
                str(home / "server.properties"),
            ],
            log_path=home / "kafka.out",
            pid_path=self.pid_path(node),
        )
        if wait:
            self._wait_listening(node, timeout)

    def kill_node(self, node: int) -> None:
        """SIGKILL: no flush, no controlled shutdown, as a machine that loses power."""
        pid = running_pid(self.pid_path(node))
        if pid is None:
            raise StackError(f"Kafka broker {node} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: not self.running(node), timeout=10)

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM every node at once (one by one, the last would wait for a quorum that is gone),
        SIGKILL what still runs after `timeout`; True if any ran."""
        pids = {node: pid for node in range(self.size) if (pid := running_pid(self.pid_path(node))) is not None}
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(pid_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for node, pid in pids.items():
            if pid_alive(pid):
                self.kill_node(node)
            self.pid_path(node).unlink(missing_ok=True)
        return bool(pids)

    def _format(self) -> None:
        """Write each node's configuration; format the storage of nodes that have none, with the
        cluster id of those formatted before (a node added to a cluster joins that cluster)."""
        require_tool("java")
        libs = fetch_jars()
        replicas, min_in_sync = replication_for(self.size)
        voters = ",".join(f"{node + 1}@127.0.0.1:{port}" for node, port in enumerate(self.controller_ports))
        cluster_id = self._cluster_id() or base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        for node in range(self.size):
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
                    partitions=self.partitions,
                    replicas=replicas,
                    min_in_sync=min_in_sync,
                )
            )
            if (home / "data" / "meta.properties").exists():
                continue
            # One argument, `--cluster-id=...`: an id may start with "-", which would read as an option.
            result = subprocess.run(
                ["java", "-Dlog4j.configuration=file:/dev/null", "-cp", f"{libs}/*", "kafka.tools.StorageTool",
                 "format", f"--cluster-id={cluster_id}", "-c", str(config)],
                capture_output=True,
                text=True,
                check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise StackError(f"formatting Kafka broker {node} failed: {(result.stderr or result.stdout).strip()}")

    def _cluster_id(self) -> str | None:
        for node in range(self.size):
            meta = self.node_home(node) / "data" / "meta.properties"
            if meta.exists():
                for line in meta.read_text().splitlines():
                    if line.startswith("cluster.id="):
                        return line.split("=", 1)[1].strip()
        return None

    def _wait_listening(self, node: int, timeout: float) -> None:
        listening = wait_until(lambda: not port_is_free(self.ports[node]) or not self.running(node), timeout=timeout)
        if not listening or not self.running(node):
            raise StackError(
                f"Kafka broker {node} did not listen on {self.ports[node]} within {timeout:.0f}s; "
                f"see {self.node_home(node) / 'kafka.out'}"
            )
