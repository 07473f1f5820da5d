"""`chorus reembed`: give every document a vector from another model, resumably, for model migrations."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from uuid import UUID

import asyncpg

from services.embed.store import vector_rows, write_vectors
from shared.db import tenant_transaction
from shared.embedding import EmbeddingProvider
from shared.embedding.chunks import embed_passages


def _without_vectors(model: str) -> str:
    """Live documents `d` with no vector of their current text from the model in parameter
    `model`. A document has a row per passage: NOT EXISTS asks once, a join would list it once each."""
    return (
        "d.deleted_at IS NULL AND NOT EXISTS (SELECT FROM document_embeddings e "
        f"WHERE e.document_id = d.id AND e.content_hash = d.content_hash AND e.model = {model})"
    )


@dataclass
class ReembedSummary:
    embedded: int = 0
    tenants: int = 0
    seconds: float = 0.0


async def reembed(
    pool: asyncpg.Pool,
    provider: EmbeddingProvider,
    tenant_ids: list[UUID],
    position_file: Path,
    *,
    page: int = 256,
    progress: IO[str] = sys.stderr,
) -> ReembedSummary:
    """Embed with `provider` every live document of `tenant_ids` whose vector comes from another model.

    After each page the last document id done is saved in `position_file`; a run that stops
    (crash, Ctrl-C) starts again from there.
    """
    started = time.perf_counter()
    summary = ReembedSummary(tenants=len(tenant_ids))
    position = await asyncio.to_thread(_load, position_file)
    for tenant_id in tenant_ids:
        total = await _remaining(pool, tenant_id, provider.model)
        after = UUID(position[str(tenant_id)]) if str(tenant_id) in position else UUID(int=0)
        done = 0
        while True:
            async with tenant_transaction(pool, tenant_id) as db:
                rows = await db.fetch(
                    "SELECT d.id, d.content_hash, d.text FROM documents d "
                    f"WHERE d.id > $1 AND {_without_vectors('$2')} ORDER BY d.id LIMIT $3",
                    after, provider.model, page,
                )  # fmt: skip
            if not rows:
                break
            embedded = await embed_passages([row["text"] for row in rows], provider.embed, provider.max_batch)
            vectors = [vector for row, embeddings in zip(rows, embedded, strict=True)
                       for vector in vector_rows(row["id"], bytes(row["content_hash"]), embeddings)]  # fmt: skip
            async with tenant_transaction(pool, tenant_id) as db:
                await write_vectors(db, vectors, provider.model, provider.dimensions)
            after = rows[-1]["id"]
            position[str(tenant_id)] = str(after)
            await asyncio.to_thread(_save, position_file, position)
            done += len(rows)
            summary.embedded += len(rows)
            _draw(progress, tenant_id, done, total)
        progress.write("\n")
    summary.seconds = time.perf_counter() - started
    return summary


async def _remaining(pool: asyncpg.Pool, tenant_id: UUID, model: str) -> int:
    async with tenant_transaction(pool, tenant_id) as db:
        count: int = await db.fetchval(
            f"SELECT count(*) FROM documents d WHERE {_without_vectors('$1')}",
            model,
        )
    return count


def _load(path: Path) -> dict[str, str]:
    return dict(json.loads(path.read_text())) if path.exists() else {}


def _save(path: Path, position: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(position))


def _draw(progress: IO[str], tenant_id: UUID, done: int, total: int) -> None:
    width = 30
    filled = width * min(done, total) // max(total, 1)
    progress.write(f"\rtenant {tenant_id} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} documents")
    progress.flush()
