"""A search service over the demo data, with ingest, embed (local model) and cluster running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.cluster.app import create_app as create_cluster_app
from services.cluster.settings import ClusterSettings
from services.embed.app import create_app as create_embed_app
from services.embed.settings import EmbedSettings
from services.search.app import create_app as create_search_app
from services.search.settings import SearchSettings
from shared.settings import load
from tests.services.conftest import Ingest, sample

# Raw-event documents, live StreamChat messages, Tavus transcript turns and analysis, vCon documents.
SEARCHABLE = (
    "SELECT count(*) FROM documents d JOIN document_embeddings e ON e.document_id = d.id "
    "AND e.content_hash = d.content_hash WHERE d.deleted_at IS NULL"
)


@dataclass
class Search:
    client: TestClient
    ingest: Ingest

    def get(self, path: str, key: str | None = None, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self._auth(key))

    def post(self, path: str, body: Any, key: str | None = None) -> Any:
        return self.client.post(path, json=body, headers=self._auth(key))

    def search(self, key: str | None = None, **params: Any) -> list[dict[str, Any]]:
        response = self.get("/v1/search", key, **params)
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def _auth(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.ingest.tenant.api_key}"}


def load_demo(ingest: Ingest) -> None:
    for number, event in enumerate(sample("streamchat_events")):
        assert ingest.streamchat(event, f"demo-{number}").status_code == 200
    for callback in sample("tavus_callbacks"):
        assert ingest.tavus(callback).status_code == 200
    vcons = [{"source": "vcon", "event_type": "vcon", "external_id": v["uuid"], "payload": v} for v in sample("vcons")]
    assert ingest.events(sample("raw_events") + vcons).status_code == 202


@pytest.fixture
def services(ingest: Ingest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {**ingest.env, "CHORUS_MODEL_CACHE": str(tmp_path_factory.getbasetemp() / "models")}
    with (
        TestClient(create_embed_app(load(EmbedSettings, {**env, "CHORUS_EMBED_BATCH_WAIT_MS": "10"}))),
        TestClient(create_cluster_app(load(ClusterSettings, env))),
    ):
        yield env


@pytest.fixture
async def search(ingest: Ingest, services: dict[str, str]) -> AsyncIterator[Search]:
    load_demo(ingest)
    await settled(ingest)
    with TestClient(create_search_app(load(SearchSettings, services))) as client:
        yield Search(client, ingest)


async def settled(ingest: Ingest, at_least: int = 40) -> None:
    """Wait until every stored document is searchable and no new one came for a second."""
    last = -1
    for _ in range(240):
        documents = await ingest.count("SELECT count(*) FROM documents WHERE deleted_at IS NULL")
        if documents >= at_least and documents == last and await ingest.count(SEARCHABLE) == documents:
            return
        last = documents
        await asyncio.sleep(0.5)
    raise AssertionError(f"{last} documents, not all searchable after 120 s")
