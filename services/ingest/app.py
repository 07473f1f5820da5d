"""The ingest service: webhooks and producer events in, normalized documents out."""

from __future__ import annotations

from fastapi import FastAPI

from services.ingest.agents import Normalizer
from services.ingest.settings import IngestSettings
from services.ingest.webhooks import add_ingest_routes
from shared.service import Resources, service_app
from shared.stream import run_agent


def create_app(settings: IngestSettings) -> FastAPI:
    """Webhook endpoints, plus (unless turned off) the agents that normalize the raw topics."""

    async def start(resources: Resources) -> None:
        if not settings.normalize:
            return
        normalizer = Normalizer(resources.pool, resources.producer, settings.topic_prefix)
        for agent in normalizer.agents():
            resources.run_in_background(run_agent(agent, settings.kafka_bootstrap, resources.producer), agent.name)

    app = service_app("Chorus ingest", settings, start=start)
    app.state.settings = settings
    add_ingest_routes(app)
    return app
