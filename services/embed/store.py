"""The embed service's SQL."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg
import numpy as np
from asyncpg import Connection


async def vector_column_dimensions(pool: asyncpg.Pool) -> int:
    """The dimension the migrations gave documents.embedding."""
    dimensions: int = await pool.fetchval(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'documents'::regclass AND attname = 'embedding'"
    )
    return dimensions


async def current_documents(db: Connection, document_ids: Sequence[UUID]) -> list[asyncpg.Record]:
    """The live rows among `document_ids`: their current text hash and the model of any stored vector."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT id, content_hash, embedding_model FROM documents WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL",
        list(document_ids),
    )
    return rows


async def stored_vectors(db: Connection, model: str, content_hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
    """Vectors this tenant already has for these texts from `model`: the same text is embedded once."""
    rows = await db.fetch(
        "SELECT DISTINCT ON (content_hash) content_hash, embedding FROM documents "
        "WHERE embedding_model = $1 AND content_hash = ANY($2::bytea[]) AND embedding IS NOT NULL",
        model,
        list(content_hashes),
    )
    return {bytes(row["content_hash"]): row["embedding"].to_numpy().astype(np.float32) for row in rows}


async def write_vectors(
    db: Connection, rows: Sequence[tuple[UUID, bytes, np.ndarray | None, bool]], model: str, dimensions: int
) -> None:
    """Store each vector on its document, unless the document's text changed meanwhile."""
    await db.executemany(
        """
        UPDATE documents
        SET embedding = $3, embedding_model = $4, embedding_dim = $5, embedded_at = now(),
            metadata = CASE WHEN $6 THEN metadata || '{"embedding_truncated": true}'::jsonb ELSE metadata END
        WHERE id = $1 AND content_hash = $2
        """,
        [(document_id, content_hash, vector, model, dimensions, truncated)
         for document_id, content_hash, vector, truncated in rows],
    )  # fmt: skip
