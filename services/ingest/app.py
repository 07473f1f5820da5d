"""The ingest service's HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.ingest.settings import IngestSettings
from shared.service import service_app


def create_app(settings: IngestSettings) -> FastAPI:
    """The ingest service: health, readiness and metrics."""
    return service_app("Chorus ingest", settings)
