"""The semantic query's two shapes: with no filter but the tenant, the nearest vectors are read
first and joined to their documents after; with a filter, the join comes first. Both give the
same answer, deleted documents, older texts' vectors and several passages of one document
included. Real Postgres."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import numpy as np

from services.search import queries
from shared import tenants
from shared.db import tenant_transaction
from shared.hashing import text_hash

MODEL = "shapes-test"
# Far enough back that every document passes: the filtered shape with nothing filtered out.
EVERYTHING = queries.Filters(since=datetime(1970, 1, 1, tzinfo=UTC))


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


async def test_the_unfiltered_shape_answers_as_the_filtered_one(pool: asyncpg.Pool) -> None:
    tenant_id = await tenants.create_tenant(pool, "semantic-shapes")
    generator = np.random.default_rng(5)
    query = _unit(generator.normal(size=384))
    ids = []
    nearest_passage: dict[object, tuple[float, int]] = {}  # a document's least distance, and its chunk
    async with tenant_transaction(pool, tenant_id) as db:
        for number in range(40):
            text = f"document {number}"
            document_id = await db.fetchval(
                "INSERT INTO documents (tenant_id, source, content_type, doc_key, text, content_hash) "
                "VALUES ($1, 'test', 'text', $2, $3, $4) RETURNING id",
                tenant_id, str(number), text, text_hash(text),
            )  # fmt: skip
            ids.append(document_id)
            # Every other document has a second passage.
            for chunk in range(2 if number % 2 else 1):
                vector = _unit(query * 10 + generator.normal(size=384))
                distance = 1.0 - float(vector @ query)
                nearest_passage[document_id] = min(nearest_passage.get(document_id, (2.0, 0)), (distance, chunk))
                await db.execute(
                    "INSERT INTO document_embeddings (document_id, chunk, tenant_id, model, dimensions, "
                    "content_hash, embedding) VALUES ($1, $2, $3, $4, 384, $5, $6)",
                    document_id, chunk, tenant_id, MODEL, text_hash(text), vector,
                )  # fmt: skip
        # Three of the nearest are deleted, one holds only a vector of its older text.
        by_distance = sorted(ids, key=lambda document_id: (nearest_passage[document_id], str(document_id)))
        gone = by_distance[:3]
        edited = by_distance[4]
        await db.execute("UPDATE documents SET deleted_at = now() WHERE id = ANY($1::uuid[])", gone)
        await db.execute("UPDATE documents SET content_hash = $2 WHERE id = $1", edited, text_hash("edited"))
    expected = [(document_id, nearest_passage[document_id][1]) for document_id in by_distance
                if document_id not in {*gone, edited}]  # fmt: skip

    async def nearest(filters: queries.Filters, limit: int) -> list[tuple[object, int | None]]:
        async with tenant_transaction(pool, tenant_id, queries.semantic_settings(64)) as db:
            hits = await queries.semantic(db, query, MODEL, filters, limit, None, queries.ID_ONLY)
        return [(hit.row["id"], hit.chunk) for hit in hits]

    # The vectors are in the growing segment, searched exactly: both shapes find the true nearest,
    # one hit per document (its nearest passage), past the deleted and the edited ones.
    for limit in (1, 5, 20):
        assert await nearest(queries.Filters(), limit) == expected[:limit]
        assert await nearest(EVERYTHING, limit) == expected[:limit]
