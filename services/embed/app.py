"""The embed service: documents from chorus.docs get vectors in Postgres and go on to chorus.embedded."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.embed.agents import Embedder
from services.embed.segments import SegmentKeeper, SegmentPolicy
from services.embed.settings import EmbedSettings
from services.embed.store import vector_column_dimensions
from shared.embedding import create_provider
from shared.service import Resources, service_app


class DimensionMismatch(RuntimeError):
    """The provider's vectors do not fit the database's vector column."""


def create_app(settings: EmbedSettings) -> FastAPI:
    """Health, metrics, the embed_documents agent and the upkeep of the vector segments."""

    async def start(resources: Resources) -> None:
        column = await vector_column_dimensions(resources.pool)
        if column != settings.embedding_dimensions:
            raise DimensionMismatch(
                f"CHORUS_EMBEDDING_DIMENSIONS is {settings.embedding_dimensions} but "
                f"document_embeddings.embedding holds {column}-d vectors; set it to {column} "
                "or migrate the database with CHORUS_EMBEDDING_DIM"
            )
        provider = await asyncio.to_thread(create_provider, settings)
        resources.closers.append(provider.close)
        embedder = Embedder(settings, resources.pool, resources.producer, provider)
        resources.start_agent(embedder.agent())
        # Sealing, indexing and merging vector segments, by one replica at a time (an advisory lock).
        policy = SegmentPolicy(
            settings.segment_rows,
            settings.segment_merge_factor,
            settings.segment_collapse_share,
            settings.segment_collapse_after_seconds,
        )
        keeper = SegmentKeeper(settings.database_url, policy, settings.segment_build_memory_mb)
        resources.run_in_background(keeper.run(settings.segment_check_seconds), "vector_segments")

    return service_app("Chorus embed", settings, start=start)
