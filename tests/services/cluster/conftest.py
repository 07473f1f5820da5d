"""The whole StreamChat path in the test's process: ingest -> embed (local model) -> cluster."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from bench.webhooks import direct_message
from services.cluster.app import create_app as create_cluster_app
from services.cluster.settings import ClusterSettings
from services.embed.app import create_app as create_embed_app
from services.embed.settings import EmbedSettings
from shared.db import tenant_transaction
from shared.settings import load
from tests.services.conftest import Ingest

CREATOR = "creator-jay"
START = datetime(2026, 11, 20, 19, 0, tzinfo=UTC)

MEMBER_OF = (
    "SELECT m.cluster_id FROM cluster_members m JOIN streamchat_messages s ON s.id = m.message_id "
    "WHERE s.message_id = $1"
)


@dataclass
class Pipeline:
    ingest: Ingest
    sent: itertools.count[int] = field(default_factory=itertools.count)

    def dm(self, visitor: str, message_id: str, text: str, minute: float = 0, **options: Any) -> None:
        """Send a StreamChat webhook of `visitor`'s channel with the creator, `minute`s after START."""
        body = direct_message(CREATOR, visitor, message_id, text, START + timedelta(minutes=minute), **options)
        response = self.ingest.streamchat(body, f"hook-{next(self.sent)}")
        assert response.status_code == 200, response.text

    async def cluster_of(self, message_id: str) -> UUID | None:
        async with tenant_transaction(self.ingest.pool, self.ingest.tenant.id) as db:
            cluster_id: UUID | None = await db.fetchval(MEMBER_OF, message_id)
            return cluster_id

    async def settled(self, sql: str, expected: int, *args: Any) -> None:
        """Wait until the count `sql` reaches `expected`, or fail saying what it was."""
        found = await self.ingest.wait_for(sql, expected, *args, within=90)
        assert found == expected, f"{sql!r} counted {found}, expected {expected}"


@pytest.fixture
def pipeline(ingest: Ingest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    cache = str(tmp_path_factory.getbasetemp() / "models")
    embed = load(EmbedSettings, {**ingest.env, "CHORUS_EMBED_BATCH_WAIT_MS": "10", "CHORUS_MODEL_CACHE": cache})
    cluster = load(ClusterSettings, ingest.env)
    with TestClient(create_embed_app(embed)), TestClient(create_cluster_app(cluster)):
        yield Pipeline(ingest)
