"""The ingest service: webhooks and producer events in, normalized documents out."""

from __future__ import annotations

from fastapi import FastAPI

from services.ingest.agents import Normalizer
from services.ingest.replies import start_reply_delivery
from services.ingest.settings import IngestSettings
from services.ingest.webhooks import add_ingest_routes
from shared.service import Resources, service_app


def create_app(settings: IngestSettings) -> FastAPI:
    """Webhook endpoints, plus (unless turned off) the agents that normalize the raw topics and deliver replies."""

    async def start(resources: Resources) -> None:
        if settings.deliver_replies:
            start_reply_delivery(resources, settings)
        if not settings.normalize:
            return
        normalizer = Normalizer(resources.pool, resources.producer, settings.topic_prefix)
        for agent in normalizer.agents():
            resources.start_agent(agent)

    app = service_app("Chorus ingest", settings, start=start)
    app.state.settings = settings
    add_ingest_routes(app)
    return app
