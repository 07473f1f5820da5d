"""The cluster service's HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.cluster.settings import ClusterSettings
from shared.service import service_app


def create_app(settings: ClusterSettings) -> FastAPI:
    """The cluster service: health, readiness and metrics."""
    return service_app("Chorus cluster", settings)
