"""What every Chorus service process has: its Postgres pool, its Kafka producer, health and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Info, generate_latest

from shared import logging as chorus_logging
from shared.db import create_pool, database_answers
from shared.docs import serve_docs
from shared.kafka import broker_answers, create_producer
from shared.settings import CommonSettings, redacted
from shared.stream import Agent, run_agent

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]]

SERVICE_INFO = Info("chorus_service", "The Chorus service this process runs.")


@dataclass
class Resources:
    """The connections a service holds for its whole life."""

    settings: CommonSettings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    # A pool on a read replica, for the routes that only read (search's CHORUS_SEARCH_DATABASE_URL).
    read_pool: asyncpg.Pool | None = None
    # Called at shutdown, after the background tasks stopped (a provider's HTTP client, say).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def read_only_pool(self) -> asyncpg.Pool:
        """The pool for queries that only read: the replica's when one is set, else the primary's."""
        return self.pool if self.read_pool is None else self.read_pool

    def checks(self) -> dict[str, Check]:
        checks: dict[str, Check] = {
            "postgres": lambda: database_answers(self.pool),
            "kafka": lambda: broker_answers(self.settings.kafka_bootstrap),
        }
        if self.read_pool is not None:
            checks["postgres_replica"] = lambda: database_answers(self.read_only_pool)
        if self.background:
            checks["agents"] = self._agents_run
        return checks

    def run_in_background(self, work: Awaitable[None], name: str) -> None:
        """Run `work` for the life of the service; if it ever stops, the service is no longer ready."""
        task = asyncio.ensure_future(work)
        task.set_name(name)
        task.add_done_callback(_report_stopped)
        self.background.append(task)

    def start_agent(self, agent: Agent[Any]) -> None:
        """Consume with `agent` for the life of the service, on this service's producer and topics."""
        settings = self.settings
        self.run_in_background(
            run_agent(agent, settings.kafka_bootstrap, self.producer, settings.topic_prefix), agent.name
        )

    async def _agents_run(self) -> bool:
        return not any(task.done() for task in self.background)


def _report_stopped(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a background agent stopped", extra={"agent": task.get_name()}, exc_info=task.exception())


@asynccontextmanager
async def open_resources(settings: CommonSettings) -> AsyncIterator[Resources]:
    """Connect to Postgres and Kafka; close both on the way out."""
    pool = await create_pool(settings.database_url)
    producer = create_producer(settings.kafka_bootstrap)
    try:
        await producer.start()
        resources = Resources(settings=settings, pool=pool, producer=producer)
        try:
            yield resources
        finally:
            for task in resources.background:
                task.cancel()
            await asyncio.gather(*resources.background, return_exceptions=True)
            for close in resources.closers:
                await close()
    finally:
        await producer.stop()
        await pool.close()


def add_health_routes(app: FastAPI, checks: Callable[[], Mapping[str, Check]]) -> None:
    """/healthz (the process answers), /readyz (its dependencies answer) and /metrics."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        named = dict(checks())
        results = await asyncio.gather(*(check() for check in named.values()))
        status = dict(zip(named, results, strict=True))
        ready = all(results)
        return JSONResponse({"ready": ready, "checks": status}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def serve(app: FastAPI, service: str, settings: CommonSettings, port: int) -> None:
    """Run `app` until SIGTERM or SIGINT, logging JSON lines."""
    chorus_logging.configure(service, settings.log_level)
    SERVICE_INFO.info({"service": service})
    log.info("starting", extra={"port": port, "settings": redacted(settings)})
    uvicorn.run(app, host=settings.host, port=port, log_config=None, access_log=False)


Starter = Callable[[Resources], Awaitable[None]]


def service_app(title: str, settings: CommonSettings, *, start: Starter | None = None, **options: Any) -> FastAPI:
    """A FastAPI app that opens the service's resources at start-up and answers health checks.

    `start` runs once the resources are open; a worker uses it to start its agents as
    background tasks (appended to `resources.background`, cancelled at shutdown).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            if start is not None:
                await start(resources)
            yield

    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None, **options)
    serve_docs(app)
    add_health_routes(app, lambda: app.state.resources.checks())
    return app
