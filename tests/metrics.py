"""Reading this process's Prometheus counters in tests, as growth since a starting point."""

from __future__ import annotations

from prometheus_client import REGISTRY

Labels = tuple[tuple[str, str], ...]


class MetricDelta:
    """How much the samples of `name` that carry `labels` grew since this object was made."""

    def __init__(self, name: str, **labels: str) -> None:
        self.name = name
        self.labels = labels
        self.baseline = self._samples(labels)

    def delta(self, reason: str | None = None) -> float:
        """The growth of the samples that also carry reason=`reason` (all of them when None)."""
        wanted = dict(self.labels, **({"reason": reason} if reason is not None else {}))
        return sum(value - self.baseline.get(labels, 0.0) for labels, value in self._samples(wanted).items())

    def _samples(self, wanted: dict[str, str]) -> dict[Labels, float]:
        return {
            tuple(sorted(sample.labels.items())): sample.value
            for metric in REGISTRY.collect()
            for sample in metric.samples
            if sample.name == self.name and all(sample.labels.get(key) == value for key, value in wanted.items())
        }
