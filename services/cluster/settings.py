"""Settings of the cluster service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import CommonSettings, setting


@dataclass(frozen=True)
class ClusterSettings(CommonSettings):
    port: int = setting("CHORUS_CLUSTER_PORT", 8083, "Port of the cluster service's HTTP server.")
