"""An ingest service of the test's own, with a tenant whose StreamChat app, Tavus token and API key are known."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from fastapi.testclient import TestClient

from bench.webhooks import signature
from services.ingest import credentials
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared import tenants
from shared.db import tenant_transaction
from shared.settings import load
from tests.fake_streamchat import FakeStreamChat

DATA = Path(__file__).resolve().parents[2] / "deploy" / "demo"
APP_KEY = "acme-streamchat"
# As long as a real app secret: PyJWT warns about HMAC keys under 32 bytes when the SDK signs with it.
APP_SECRET = "acme-streamchat-secret-0123456789abcdef0123456789"


def sample(name: str) -> list[dict[str, Any]]:
    """The records of deploy/demo/<name>.jsonl, the sample data `make up` loads too."""
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return signature(body, secret)


@dataclass
class Tenant:
    id: UUID
    api_key: str
    tavus_token: str


@dataclass
class Ingest:
    client: TestClient
    tenant: Tenant
    pool: asyncpg.Pool
    env: dict[str, str]

    def streamchat(self, body: dict[str, Any], webhook_id: str, **headers: str) -> Any:
        raw = json.dumps(body).encode()
        return self.client.post(
            "/webhooks/streamchat",
            content=raw,
            headers={"X-Api-Key": APP_KEY, "X-Signature": sign(raw), "X-Webhook-Id": webhook_id,
                     "Content-Type": "application/json", **headers},
        )  # fmt: skip

    def tavus(self, body: dict[str, Any]) -> Any:
        return self.client.post("/webhooks/tavus", json=body, headers={"X-Chorus-Token": self.tenant.tavus_token})

    def events(self, body: Any, **headers: str) -> Any:
        return self.client.post(
            "/v1/events", json=body, headers={"Authorization": f"Bearer {self.tenant.api_key}", **headers}
        )

    async def count(self, sql: str, *args: Any) -> int:
        async with tenant_transaction(self.pool, self.tenant.id) as db:
            value: int = await db.fetchval(sql, *args)
            return value

    async def wait_for(self, sql: str, expected: int, *args: Any, within: float = 60.0) -> int:
        """Poll `sql` (a count) until it equals `expected`; returns the last count."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            value = await self.count(sql, *args)
            if value == expected or asyncio.get_running_loop().time() > deadline:
                return value
            await asyncio.sleep(0.2)


async def make_tenant(pool: asyncpg.Pool, name: str, app_key: str = APP_KEY, app_secret: str = APP_SECRET) -> Tenant:
    tenant_id = await tenants.create_tenant(pool, name)
    await credentials.add_streamchat_app(pool, tenant_id, app_key, app_secret)
    return Tenant(
        tenant_id, await tenants.create_api_key(pool, tenant_id), await credentials.create_tavus_token(pool, tenant_id)
    )


@pytest.fixture
async def tenant(pool: asyncpg.Pool) -> Tenant:
    return await make_tenant(pool, "acme")


@pytest.fixture
def streamchat() -> Iterator[FakeStreamChat]:
    """A StreamChat stand-in that knows the tenant's app: where ingest delivers replies."""
    with FakeStreamChat({APP_KEY: APP_SECRET}) as server:
        yield server


@pytest.fixture
def ingest_settings(service_env: dict[str, str], streamchat: FakeStreamChat) -> IngestSettings:
    return load(
        IngestSettings,
        {**service_env, "CHORUS_INGEST_MAX_BODY_BYTES": "65536", "CHORUS_STREAMCHAT_BASE_URL": streamchat.base_url},
    )


@pytest.fixture
def ingest(
    ingest_settings: IngestSettings, tenant: Tenant, pool: asyncpg.Pool, service_env: dict[str, str]
) -> Iterator[Ingest]:
    with TestClient(create_app(ingest_settings)) as client:
        yield Ingest(client, tenant, pool, service_env)


Counter = Callable[[str], Awaitable[int]]


@pytest.fixture
async def admin_count(database: Any) -> AsyncIterator[Callable[[str], Awaitable[Any]]]:
    """Run a query as the owner, across tenants (to check that nothing landed where it should not)."""
    connection = await asyncpg.connect(database.admin_url)

    async def run(sql: str) -> Any:
        return await connection.fetchval(sql)

    yield run
    await connection.close()
