import io
from pathlib import Path
from uuid import UUID

import asyncpg
import pytest

from services.embed.reembed import reembed
from shared.db import tenant_transaction
from shared.embedding.hashed import HashEmbedder
from tests.services.conftest import Ingest, make_tenant, sample


async def _documents(pool: asyncpg.Pool, tenant_id: UUID) -> list[tuple[object, ...]]:
    async with tenant_transaction(pool, tenant_id) as db:
        return [
            tuple(row)
            for row in await db.fetch(
                "SELECT d.id, e.model, e.dimensions FROM documents d "
                "LEFT JOIN document_embeddings e ON e.document_id = d.id"
            )
        ]


async def test_reembed_moves_every_document_to_the_new_model_and_resumes(
    ingest: Ingest, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    other = await make_tenant(pool, "other", "other-app", "s")
    assert ingest.events(sample("raw_events")).status_code == 202
    assert await ingest.wait_for("SELECT count(*) FROM documents", 26) == 26
    position = tmp_path / "position.json"

    class StopsAfterOnePage(HashEmbedder):
        calls = 0

        async def embed(self, texts):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt
            return await super().embed(texts)

    interrupted = StopsAfterOnePage(384)
    with pytest.raises(KeyboardInterrupt):
        await reembed(pool, interrupted, [ingest.tenant.id, other.id], position, page=10, progress=io.StringIO())
    assert sum(model == "sha256-hash" for _, model, _ in await _documents(pool, ingest.tenant.id)) == 10

    progress = io.StringIO()
    summary = await reembed(pool, HashEmbedder(384), [ingest.tenant.id, other.id], position, page=10, progress=progress)
    assert summary.embedded == 16
    assert {(model, dim) for _, model, dim in await _documents(pool, ingest.tenant.id)} == {("sha256-hash", 384)}
    assert "16/16 documents" in progress.getvalue()
    again = await reembed(pool, HashEmbedder(384), [ingest.tenant.id], tmp_path / "fresh.json", progress=io.StringIO())
    assert again.embedded == 0


async def test_a_long_document_moves_to_a_new_model_once_with_a_vector_per_passage(
    ingest: Ingest, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    text = " ".join(f"word{n}" for n in range(400))  # three passages
    event = {"source": "slack", "event_type": "message", "external_id": "long-one", "text": text}
    assert ingest.events([event]).status_code == 202
    assert await ingest.wait_for("SELECT count(*) FROM documents", 1) == 1

    class OtherModel(HashEmbedder):
        def __init__(self, dimensions: int) -> None:
            super().__init__(dimensions)
            self.model = "other-hash"

    rows = "SELECT count(*) FROM document_embeddings WHERE model = $1"
    for number, embedder in enumerate((HashEmbedder(384), OtherModel(384))):
        progress = io.StringIO()
        summary = await reembed(pool, embedder, [ingest.tenant.id], tmp_path / f"{number}.json", progress=progress)
        assert summary.embedded == 1 and "1/1 documents" in progress.getvalue()
        assert await ingest.count(rows, embedder.model) == 3  # its three passages, once each
    # The new model's vectors replace the old one's.
    assert await ingest.count("SELECT count(*) FROM document_embeddings") == 3
