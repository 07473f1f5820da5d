"""The search service's HTTP API (DESIGN.md "Search service HTTP API"); every route needs a Bearer key.

Each request runs its queries in one transaction with the key's tenant set, as the services'
non-owner role, under row-level security (shared/db.py). The routes that only read use the read
replica when CHORUS_SEARCH_DATABASE_URL names one (docs/scaling.md); the routes live in
services/search/routes/.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.search.embedding import QueryEmbedder
from services.search.replica import export_replica_lag
from services.search.routes import clusters, conversations, inbox, privacy, search, stats
from services.search.settings import SearchSettings
from shared.db import create_pool
from shared.embedding import create_provider
from shared.http.keys import use_api_keys
from shared.http.limits import BodyLimit
from shared.http.problems import answer_with_problems, declare_problems
from shared.service import Resources, service_app


def create_app(settings: SearchSettings) -> FastAPI:
    async def start(resources: Resources) -> None:
        provider = await asyncio.to_thread(create_provider, settings)
        resources.closers.append(provider.close)
        app.state.embedder = QueryEmbedder(provider, settings.query_cache_size)
        stats.count_dead_letters(app, resources)
        if settings.search_database_url:
            resources.read_pool = await create_pool(settings.search_database_url)
            resources.closers.append(resources.read_pool.close)
            resources.run_in_background(export_replica_lag(resources.pool, resources.read_pool), "export_replica_lag")

    app = service_app("Chorus search", settings, start=start)
    app.state.settings = settings
    for routes in (search, clusters, conversations, privacy, stats):
        app.include_router(routes.router)
    app.include_router(inbox.router)  # the creator's inbox page, outside the API
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    use_api_keys(app, settings.key_cache_seconds)
    answer_with_problems(app)
    declare_problems(app)
    return app
