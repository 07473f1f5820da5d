"""Metrics of the cluster service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ASSIGNMENTS = Counter(
    "chorus_cluster_assignments_total",
    "Cluster changes by outcome: joined, new, superseded, removed, or skipped (not clusterable, stale or replayed).",
    ["outcome"],
)
# Exported by one cluster replica only, the holder of services/cluster/leadership.py's lock.
OPEN_CLUSTERS = Gauge(
    "chorus_cluster_open_clusters", "Open clusters per tenant (from one replica of the service).", ["tenant"]
)
CLUSTER_SIZE = Histogram(
    "chorus_cluster_size_messages",
    "Size of the cluster a message joined or opened, right after it did.",
    buckets=(1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000),
)
