"""The search service's HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.search.settings import SearchSettings
from shared.service import service_app


def create_app(settings: SearchSettings) -> FastAPI:
    """The search service: health, readiness and metrics."""
    return service_app("Chorus search", settings)
