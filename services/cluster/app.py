"""The cluster service's HTTP app: health and metrics beside the cluster_messages agent."""

from __future__ import annotations

from fastapi import FastAPI

from services.cluster import labels
from services.cluster.agents import Clusterer
from services.cluster.settings import ClusterSettings
from shared.service import Resources, service_app


def create_app(settings: ClusterSettings) -> FastAPI:
    async def start(resources: Resources) -> None:
        clusterer = Clusterer(settings, resources.pool, resources.producer)
        resources.start_agent(clusterer.agent())
        resources.run_in_background(clusterer.count_open_clusters(), "count_open_clusters")
        resources.run_in_background(labels.keep_labels_current(resources.pool), "keep_labels_current")

    return service_app("Chorus cluster", settings, start=start)
