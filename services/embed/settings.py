"""Settings of the embed service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import CommonSettings, setting


@dataclass(frozen=True)
class EmbedSettings(CommonSettings):
    port: int = setting("CHORUS_EMBED_PORT", 8082, "Port of the embed service's HTTP server.")
