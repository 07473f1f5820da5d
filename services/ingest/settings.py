"""Settings of the ingest service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import CommonSettings, setting


@dataclass(frozen=True)
class IngestSettings(CommonSettings):
    port: int = setting("CHORUS_INGEST_PORT", 8081, "Port of the ingest service's HTTP server.")
