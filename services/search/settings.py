"""Settings of the search service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import CommonSettings, setting


@dataclass(frozen=True)
class SearchSettings(CommonSettings):
    port: int = setting("CHORUS_SEARCH_PORT", 8080, "Port of the search service's HTTP server.")
