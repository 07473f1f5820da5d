"""The embed service's SQL."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg
import numpy as np
from asyncpg import Connection
from pgvector import Vector


async def vector_column_dimensions(pool: asyncpg.Pool) -> int:
    """The dimension the migrations gave document_embeddings.embedding."""
    dimensions: int = await pool.fetchval(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'document_embeddings'::regclass AND attname = 'embedding'"
    )
    return dimensions


async def current_documents(db: Connection, document_ids: Sequence[UUID]) -> list[asyncpg.Record]:
    """The live rows among `document_ids`: their current text hash and the model of a vector of that text."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT d.id, d.content_hash, e.model AS embedding_model FROM documents d "
        "LEFT JOIN document_embeddings e ON e.document_id = d.id AND e.content_hash = d.content_hash "
        "WHERE d.id = ANY($1::uuid[]) AND d.deleted_at IS NULL",
        list(document_ids),
    )
    return rows


async def stored_vectors(db: Connection, model: str, content_hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
    """Vectors this tenant already has for these texts from `model`: the same text is embedded once."""
    rows = await db.fetch(
        "SELECT DISTINCT ON (content_hash) content_hash, embedding FROM document_embeddings "
        "WHERE model = $1 AND content_hash = ANY($2::bytea[])",
        model,
        list(content_hashes),
    )
    return {bytes(row["content_hash"]): row["embedding"].to_numpy().astype(np.float32) for row in rows}


async def write_vectors(
    db: Connection, rows: Sequence[tuple[UUID, bytes, np.ndarray, bool]], model: str, dimensions: int
) -> None:
    """Store each vector for its document, unless the document's text changed meanwhile.

    Not COPY: Postgres refuses COPY FROM into a table under row-level security.
    """
    # One statement for the whole batch: the rows travel as arrays and are joined to their documents.
    await db.execute(
        """
        INSERT INTO document_embeddings (document_id, tenant_id, model, dimensions, content_hash, truncated, embedding)
        SELECT d.id, d.tenant_id, $4, $5, d.content_hash, batch.truncated, batch.embedding
        FROM unnest($1::uuid[], $2::bytea[], $3::vector[], $6::boolean[])
            AS batch (document_id, content_hash, embedding, truncated)
        JOIN documents d ON d.id = batch.document_id AND d.content_hash = batch.content_hash
        ON CONFLICT (document_id) DO UPDATE
            SET model = excluded.model, dimensions = excluded.dimensions, content_hash = excluded.content_hash,
                truncated = excluded.truncated, embedding = excluded.embedding, embedded_at = now()
        """,
        [row[0] for row in rows],
        [row[1] for row in rows],
        [Vector(row[2]) for row in rows],
        model,
        dimensions,
        [row[3] for row in rows],
    )
