"""Metrics of the cluster service."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import OTHER, Bounded
from shared.tenants import Tenant

ASSIGNMENTS = Counter(
    "chorus_cluster_assignments_total",
    "Cluster changes by outcome: joined, new, superseded, removed, or skipped (not clusterable, stale or replayed).",
    ["outcome"],
)
# Exported by one cluster replica only, the holder of services/cluster/leadership.py's lock.
OPEN_CLUSTERS = Gauge(
    "chorus_cluster_open_clusters",
    'Open clusters by tenant: those of CHORUS_CLUSTER_GAUGE_TENANTS by name, the others summed as "other" '
    "(from one replica of the service).",
    ["tenant"],
)
CLUSTER_SIZE = Histogram(
    "chorus_cluster_size_messages",
    "Size of the cluster a message joined or opened, right after it did.",
    buckets=(1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000),
)


def export_open_clusters(gauge: Gauge, counts: Mapping[Tenant, int], shown: Collection[str]) -> None:
    """Set `gauge` from each tenant's open clusters: a tenant that `shown` names (by name or id) under
    that name or id, every other one summed as `other`, so /metrics holds at most len(shown) + 1
    series and no tenant it was not told to show."""
    bounded = Bounded(gauge, shown)
    totals: dict[str, int] = {}
    for tenant, count in counts.items():
        name = tenant.name if tenant.name in shown else str(tenant.id)
        label = name if name in shown else OTHER
        totals[label] = totals.get(label, 0) + count
    totals.setdefault(OTHER, 0)
    for label, total in totals.items():
        bounded.labels(label).set(total)
    # A tenant shown before may be gone from the counts (renamed): its series goes too.
    exported = {sample.labels["tenant"] for metric in gauge.collect() for sample in metric.samples}
    for stale in exported - totals.keys():
        gauge.remove(stale)
