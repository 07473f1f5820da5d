"""A text longer than the model's window: a vector per passage, found by the passage that matches."""

from __future__ import annotations

from shared.embedding.chunks import passage_spans
from tests.services.search.conftest import Search

# A retrospective whose last lines, past the first 300 words, are about a double charge.
FILLER = (
    "The venue walkthrough covered stage lighting, the backline rental, parking for the crew, "
    "catering for forty people and the load-in schedule for the second night. "
)
LATE = (
    "One more thing from the support queue: a fan who cancelled her ticket says the refund was "
    "taken from her credit card twice instead of being paid back once."
)
TEXT = FILLER * 12 + LATE  # 312 words, three passages
EVENT = {"source": "slack", "event_type": "message", "external_id": "retro-long", "text": TEXT}
QUERY = "customer charged two times for a refund on a cancelled ticket"
PASSAGE_ROWS = (
    "SELECT count(*) FROM document_embeddings e JOIN documents d ON d.id = e.document_id "
    "AND d.content_hash = e.content_hash WHERE d.external_id = 'retro-long'"
)


async def test_a_long_text_gets_a_vector_per_passage_and_is_found_by_its_last_one(search: Search) -> None:
    ingest = search.ingest
    assert ingest.events([EVENT]).status_code == 202
    passages = len(passage_spans(TEXT))
    assert passages == 3
    chunks = PASSAGE_ROWS
    assert await ingest.wait_for(chunks, passages, within=120) == passages
    rows = await ingest.count(chunks + f" AND e.chunk BETWEEN 0 AND {passages - 1}")
    assert rows == passages  # numbered 0, 1, 2

    for mode in ("semantic", "hybrid"):
        response = search.get("/v1/search", q=QUERY, mode=mode, explain="true", limit=20)
        assert response.status_code == 200, response.text
        found = [result for result in response.json()["results"] if result["external_id"] == "retro-long"]
        assert len(found) == 1, (mode, found)  # the document once, not once per passage
        assert found[0]["explain"]["chunk"] == passages - 1, mode
        assert "credit card twice" in found[0]["snippet"], found[0]["snippet"]
        assert found[0]["text"] == TEXT  # the result is the whole document

    # Without a query text (a vector posted), the snippet is the start of the nearest passage.
    embedder = search.client.app.state.embedder  # type: ignore[attr-defined]
    vector = (await embedder.vector(QUERY)).tolist()
    response = search.post("/v1/search", {"mode": "semantic", "vector": vector, "limit": 20})
    assert response.status_code == 200, response.text
    found = [result for result in response.json()["results"] if result["external_id"] == "retro-long"]
    start, _ = passage_spans(TEXT)[-1]
    assert [result["snippet"] for result in found] == [TEXT[start : start + 200]]


async def test_pages_of_semantic_results_name_each_document_once(search: Search) -> None:
    assert search.ingest.events([EVENT]).status_code == 202
    assert await search.ingest.wait_for(PASSAGE_ROWS, 3, within=120) == 3
    seen: list[str] = []
    cursor = None
    for _ in range(40):
        params = {
            "q": QUERY,
            "mode": "semantic",
            "limit": 2,
            "threshold": 0.0,
            **({"cursor": cursor} if cursor else {}),
        }
        page = search.get("/v1/search", **params).json()
        seen += [result["id"] for result in page["results"]]
        assert len(page["results"]) == 2 or page["next_cursor"] is None  # full pages while more exist
        cursor = page["next_cursor"]
        if cursor is None:
            break
    one_page = search.search(q=QUERY, mode="semantic", limit=100, threshold=0.0)
    assert len(one_page) > 20
    assert seen == [result["id"] for result in one_page]  # the same documents in the same order, once each
