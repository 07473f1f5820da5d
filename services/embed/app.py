"""The embed service's HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.embed.settings import EmbedSettings
from shared.service import service_app


def create_app(settings: EmbedSettings) -> FastAPI:
    """The embed service: health, readiness and metrics."""
    return service_app("Chorus embed", settings)
