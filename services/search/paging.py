"""Pages of search results: where the next page starts, and its cursor (docs/search.md "Pages")."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from uuid import UUID

import numpy as np
from pydantic import TypeAdapter

from services.search import cursors
from services.search.models import SearchRequest
from services.search.queries import Hit

# Search pages reach this many results deep: further down, a hybrid page would rank that many
# documents to show a few, and nobody reads that far down a ranking.
MAX_SEARCH_DEPTH = 1000

# What a list is ordered by, besides the id, where that is a value of the document and the query
# alone, which documents added later do not change: a semantic list's distance. (A keyword rank
# is not: BM25 weighs a word by how many documents have it.)
SORT_VALUES: dict[str, Callable[[Hit], float]] = {"semantic": lambda hit: float(hit.row["distance"])}


@dataclass(frozen=True)
class Page:
    """Where a page of results starts: how many results came before it; in semantic mode also the
    distance and id of the last of them; in keyword mode whether the first page matched by
    trigrams (the others follow it).

    A semantic page starts right after the last result shown, so a document added between pages
    never makes a result come twice. Keyword and hybrid scores move when documents are added (a
    word's weight, a list's ranks): their pages start at an offset, a hybrid page in a list fused
    from lists as long as the first page's (`candidates`), which longer lists would reorder."""

    offset: int = 0
    after: tuple[float, UUID] | None = None
    trigrams: bool | None = None
    candidates: int | None = None

    def with_candidates(self, first_page: int) -> Page:
        """This page, fused from lists of the first page's length (`first_page` on the first page)."""
        return self if self.candidates is not None else replace(self, candidates=first_page)

    def depth(self, limit: int, mode: str) -> int:
        """How many results a list must rank for this page: the earlier pages (but in semantic
        mode), the page, and one more that tells whether another page follows."""
        return limit + 1 if mode in SORT_VALUES else self.offset + limit + 1

    def cut(self, hits: list[Hit], limit: int, mode: str) -> tuple[list[Hit], Page | None]:
        """This page's hits out of the ranking, and where the next page starts (None: no next page)."""
        sort_value = SORT_VALUES.get(mode)
        rest = hits if sort_value is not None else hits[self.offset :]
        shown = rest[:limit]
        offset = self.offset + len(shown)
        if len(rest) <= limit or offset >= MAX_SEARCH_DEPTH:
            return shown, None
        last = shown[-1]
        if sort_value is not None:
            return shown, Page(offset, (sort_value(last), last.row["id"]))
        return shown, Page(offset, trigrams=last.by_trigrams if mode == "keyword" else None, candidates=self.candidates)


_PAGE: TypeAdapter[tuple[int, tuple[float, UUID] | None, bool | None, int | None]] = TypeAdapter(
    tuple[int, tuple[float, UUID] | None, bool | None, int | None]
)


def search_scope(search: SearchRequest) -> str:
    """What a search cursor is bound to: every parameter but the page size and the cursor. A
    query vector counts by a digest of its numbers: written out as JSON, its 384 floats cost
    most of a millisecond a request."""
    kept = search.model_dump(mode="json", exclude={"limit", "cursor", "vector"})
    if search.vector is not None:
        kept["vector"] = hashlib.sha256(np.asarray(search.vector, dtype=np.float64).tobytes()).hexdigest()
    return cursors.scope("search", kept)


def requested_page(cursor: str | None, scope: str) -> Page:
    """The page a cursor points at (the first without one); raises cursors.InvalidCursor."""
    if cursor is None:
        return Page()
    offset, after, trigrams, candidates = cursors.decode(cursor, scope, _PAGE)
    if not 0 < offset < MAX_SEARCH_DEPTH or not 0 < (candidates or 1) <= MAX_SEARCH_DEPTH:
        raise cursors.InvalidCursor("is not a cursor this API gave; pass `next_cursor` unchanged")
    return Page(offset, after, trigrams, candidates)


def next_cursor(page: Page | None, scope: str) -> str | None:
    return None if page is None else cursors.encode([page.offset, page.after, page.trigrams, page.candidates], scope)
