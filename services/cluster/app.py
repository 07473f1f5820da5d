"""The cluster service's HTTP app: health and metrics beside the cluster_messages agent."""

from __future__ import annotations

from fastapi import FastAPI

from services.cluster.agents import Clusterer
from services.cluster.settings import ClusterSettings
from shared.service import Resources, service_app
from shared.stream import run_agent


def create_app(settings: ClusterSettings) -> FastAPI:
    async def start(resources: Resources) -> None:
        clusterer = Clusterer(settings, resources.pool, resources.producer)
        agent = clusterer.agent()
        resources.run_in_background(run_agent(agent, settings.kafka_bootstrap, resources.producer), agent.name)
        resources.run_in_background(clusterer.count_open_clusters(), "count_open_clusters")

    return service_app("Chorus cluster", settings, start=start)
