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
    """Store each vector for its document in place of the document's older ones, unless the
    document's text changed meanwhile (then only the older ones go); in the open transaction,
    whose tenant is set.

    The batch travels by COPY into a temporary table (Postgres refuses COPY FROM into a table
    under row-level security) and goes on in one round trip that joins it to its documents. New
    rows land in the growing segment (migration 0013), which has no vector index: the write pays
    no graph maintenance. An older vector may be in any segment; the delete reaches them all.
    """
    await db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS embed_batch (document_id uuid, content_hash bytea, embedding vector, "
        "truncated boolean, model text, dimensions integer) ON COMMIT DELETE ROWS"
    )
    await db.copy_records_to_table(
        "embed_batch", records=[(row[0], row[1], Vector(row[2]), row[3], model, dimensions) for row in rows]
    )
    # One round trip. The batch's ids go to the statements as an array (ANY(ARRAY(...))), which
    # Postgres looks up by primary key in documents and in every segment, whatever it guesses of
    # the temporary table's size. The delete comes first and apart: in one statement the insert
    # could meet the row the delete removes (the same key, when the older vector is in the
    # growing segment too). A vector of an older text goes even when the text changed meanwhile:
    # searches skip such vectors, and the newer text's comes next.
    await db.execute(
        """
        DELETE FROM document_embeddings WHERE document_id = ANY (ARRAY(SELECT document_id FROM embed_batch));
        INSERT INTO document_embeddings (document_id, tenant_id, model, dimensions, content_hash, truncated, embedding)
        SELECT d.id, d.tenant_id, b.model, b.dimensions, d.content_hash, b.truncated, b.embedding
        FROM documents d JOIN embed_batch b ON b.document_id = d.id AND b.content_hash = d.content_hash
        WHERE d.id = ANY (ARRAY(SELECT document_id FROM embed_batch));
        DELETE FROM embed_batch;
        """
    )
