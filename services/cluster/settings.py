"""Settings of the cluster service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import CommonSettings, setting


@dataclass(frozen=True)
class ClusterSettings(CommonSettings):
    port: int = setting("CHORUS_CLUSTER_PORT", 8083, "Port of the cluster service's HTTP server.")
    threshold: float = setting(
        "CHORUS_CLUSTER_THRESHOLD",
        0.32,
        "Least average cosine similarity to a cluster's members for a message to join it (docs/cluster.md).",
    )
    rehome_clusters: int = setting(
        "CHORUS_CLUSTER_REHOME_CLUSTERS",
        6,
        "Open clusters (the changed one and its nearest) whose members may move after each assignment.",
    )
    rehome_most_members: int = setting(
        "CHORUS_CLUSTER_REHOME_MOST_MEMBERS", 100, "Clusters larger than this keep their members when re-homing."
    )
    batch_wait_ms: int = setting(
        "CHORUS_CLUSTER_BATCH_WAIT_MS",
        50,
        "Longest wait for more records after the first of a fetch, so a backlog is assigned in large batches.",
        minimum=0,
    )
    gauge_tenants: tuple[str, ...] = setting(
        "CHORUS_CLUSTER_GAUGE_TENANTS", (),
        "Tenants (names or ids, comma-separated) whose open clusters /metrics shows apart; the rest count as 'other'.",
    )  # fmt: skip
