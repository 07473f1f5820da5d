"""The embed service's SQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple
from uuid import UUID

import asyncpg
import numpy as np
from asyncpg import Connection
from pgvector import Vector

from shared.embedding import Embedding


class VectorRow(NamedTuple):
    """One passage's vector of a document's text (shared/embedding/chunks.py); chunk 0 for a short text."""

    document_id: UUID
    chunk: int
    content_hash: bytes
    vector: np.ndarray
    truncated: bool


def vector_rows(document_id: UUID, content_hash: bytes, embeddings: Sequence[Embedding]) -> list[VectorRow]:
    """The rows of one document: its passages' embeddings, numbered in order."""
    return [
        VectorRow(document_id, chunk, content_hash, embedding.vector, embedding.truncated)
        for chunk, embedding in enumerate(embeddings)
    ]


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


async def stored_vectors(db: Connection, model: str, passages: dict[bytes, int]) -> dict[bytes, list[Embedding]]:
    """Vectors this tenant already has for these texts from `model`, each text's passages in
    order: the same text is embedded once. `passages` gives each text's number of passages; the
    rows of one document that has exactly those answer for it (a document embedded whole before
    texts were cut into passages does not)."""
    rows = await db.fetch(
        """
        WITH wanted AS (SELECT * FROM unnest($2::bytea[], $3::int[]) AS w (content_hash, passages)),
        chosen AS (
            SELECT DISTINCT ON (e.content_hash) e.content_hash, e.document_id
            FROM document_embeddings e JOIN wanted w ON w.content_hash = e.content_hash
            WHERE e.model = $1 AND e.chunk = w.passages - 1 AND NOT EXISTS (
                SELECT FROM document_embeddings x
                WHERE x.document_id = e.document_id AND x.model = $1 AND x.chunk >= w.passages
            )
            ORDER BY e.content_hash, e.document_id
        )
        SELECT e.content_hash, e.chunk, e.embedding, e.truncated
        FROM document_embeddings e JOIN chosen c ON c.content_hash = e.content_hash AND c.document_id = e.document_id
        WHERE e.model = $1
        ORDER BY e.content_hash, e.chunk
        """,
        model,
        list(passages),
        list(passages.values()),
    )
    stored: dict[bytes, list[Embedding]] = defaultdict(list)
    for row in rows:
        found = stored[bytes(row["content_hash"])]
        if row["chunk"] == len(found):  # passages in order, none missing
            found.append(Embedding(row["embedding"].to_numpy().astype(np.float32), row["truncated"]))
    return {content_hash: found for content_hash, found in stored.items() if len(found) == passages[content_hash]}


async def write_vectors(db: Connection, rows: Sequence[VectorRow], model: str, dimensions: int) -> None:
    """Store the vectors of each document (one per passage) in place of the document's older
    ones, unless the document's text changed meanwhile (then only the older ones go); in the open
    transaction, whose tenant is set. A document's rows all come in the same call.

    The batch travels by COPY into a temporary table (Postgres refuses COPY FROM into a table
    under row-level security) and goes on in one round trip that joins it to its documents. New
    rows land in the growing segment (migration 0013), which has no vector index: the write pays
    no graph maintenance. An older vector may be in any segment; the delete reaches them all.
    """
    await db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS embed_batch (document_id uuid, chunk smallint, content_hash bytea, "
        "embedding vector, truncated boolean, model text, dimensions integer) ON COMMIT DELETE ROWS"
    )
    await db.copy_records_to_table(
        "embed_batch",
        records=[
            (row.document_id, row.chunk, row.content_hash, Vector(row.vector), row.truncated, model, dimensions)
            for row in rows
        ],
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
        INSERT INTO document_embeddings (document_id, chunk, tenant_id, model, dimensions, content_hash, truncated,
                                         embedding)
        SELECT d.id, b.chunk, d.tenant_id, b.model, b.dimensions, d.content_hash, b.truncated, b.embedding
        FROM documents d JOIN embed_batch b ON b.document_id = d.id AND b.content_hash = d.content_hash
        WHERE d.id = ANY (ARRAY(SELECT document_id FROM embed_batch));
        DELETE FROM embed_batch;
        """
    )
