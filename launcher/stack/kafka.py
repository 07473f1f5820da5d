"""The embedded stack's Kafka: one broker, or a KRaft cluster of several on loopback (`--kafka-brokers`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from launcher.settings import Endpoints
from launcher.stack.broker import KafkaBroker
from launcher.stack.kafka_cluster import KafkaCluster, replication_for
from launcher.stack.processes import StackError, running_pid
from shared.kafka import TopicConfig


class EmbeddedKafka:
    """One broker under `home/kafka`, or a cluster under `home/kafka-cluster`.

    The size is CHORUS_KAFKA_BROKERS when the environment sets it, else the size of the cluster
    formatted before (a later `chorus up` without the flag keeps its cluster and what is in it),
    else 1.
    """

    def __init__(self, home: Path, endpoints: Endpoints, environ: Mapping[str, str]) -> None:
        settings = endpoints.settings
        partitions = endpoints.common.topic_partitions
        self.single = KafkaBroker(home / "kafka", settings.kafka_port, settings.kafka_controller_port, partitions)
        self.cluster_home = home / "kafka-cluster"
        formatted = self._formatted_nodes()
        self.brokers = settings.kafka_brokers if "CHORUS_KAFKA_BROKERS" in environ else (formatted or 1)
        if self.brokers > 1 and formatted and formatted != self.brokers:
            raise StackError(
                f"the Kafka cluster under {self.cluster_home} has {formatted} brokers, not {self.brokers}; "
                f"run `chorus down` and remove that folder (its records go with it) to start one of {self.brokers}"
            )
        ports = endpoints.kafka_ports(self.brokers)
        self.cluster = KafkaCluster(
            self.cluster_home,
            tuple(port for port, _ in ports),
            tuple(controller for _, controller in ports),
            partitions=partitions,
        )
        self.replication_factor, self.min_in_sync = replication_for(self.brokers)

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap if self.brokers > 1 else self.single.bootstrap

    def topic_config(self, configured: TopicConfig, replication_set: bool) -> TopicConfig:
        """The topics' settings: a replication factor the environment did not set follows the brokers."""
        if replication_set:
            return configured
        return TopicConfig(
            configured.partitions,
            self.replication_factor,
            configured.retention_hours,
            configured.raw_retention_hours,
        )

    def start(self) -> None:
        single_runs = running_pid(self.single.pid_path) is not None
        cluster_runs = any(self.cluster.running(node) for node in range(self.cluster.size))
        if (self.brokers > 1 and single_runs) or (self.brokers == 1 and cluster_runs):
            running = "a one-broker Kafka" if single_runs else "a Kafka cluster"
            raise StackError(
                f"{running} of this stack is running; run `chorus down` first to start {self.brokers} broker(s)"
            )
        if self.brokers > 1:
            self.cluster.start()
        else:
            self.single.start()

    def stop(self) -> bool:
        """Stop whichever runs; True if one did."""
        stopped = self.single.stop()
        return self._on_disk_cluster().stop() or stopped

    def status(self) -> dict[str, bool]:
        """`kafka` for one broker; `kafka-0`, `kafka-1`, ... for each broker of a cluster."""
        if self.brokers == 1:
            return {"kafka": running_pid(self.single.pid_path) is not None}
        return {f"kafka-{node}": self.cluster.running(node) for node in range(self.cluster.size)}

    def _formatted_nodes(self) -> int:
        return len(list(self.cluster_home.glob("node-*/data/meta.properties")))

    def _on_disk_cluster(self) -> KafkaCluster:
        # `down` stops every node it finds, whatever the environment says the size is now.
        nodes = max(self._formatted_nodes(), len(list(self.cluster_home.glob("node-*"))), self.cluster.size)
        return KafkaCluster(self.cluster_home, (0,) * nodes, (0,) * nodes)
