"""Every refusal of the search service is problem details (application/problem+json)."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from services.search.app import create_app
from services.search.settings import SearchSettings
from shared.settings import load
from tests.problems import assert_problem
from tests.services.conftest import Ingest


@pytest.fixture
def client(ingest: Ingest) -> Iterator[TestClient]:
    """Search over the tenant's empty data; its embedding provider cannot be reached."""
    env = {**ingest.env, "CHORUS_EMBEDDING_PROVIDER": "openai", "CHORUS_OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    with TestClient(create_app(load(SearchSettings, env))) as client:
        client.headers["Authorization"] = f"Bearer {ingest.tenant.api_key}"
        yield client


def test_every_refusal_of_search_is_problem_details(client: TestClient) -> None:
    invalid = assert_problem(client.get("/v1/search", params={"q": "x", "limit": 0}), 400, "limit")
    assert invalid["detail"].startswith("limit: Input should be greater than or equal to 1")
    assert_problem(client.get("/v1/search", params={"mode": "keyword"}), 400, "q")
    assert_problem(client.post("/v1/search", json={"q": "x", "mode": "fuzzy"}), 400, "mode")
    not_json = client.post("/v1/search", content=b"{", headers={"Content-Type": "application/json"})
    assert_problem(not_json, 400, "body")
    assert_problem(client.post("/v1/search", json={"mode": "semantic", "vector": [0.5]}), 400, "vector")
    assert_problem(client.get("/v1/clusters/not-a-uuid"), 400, "cluster_id")
    assert_problem(client.post("/v1/privacy/erasure", json={}), 400, "party")

    refused = client.get("/v1/search", params={"q": "x"}, headers={"Authorization": "Bearer chorus_wrong"})
    assert_problem(refused, 401)
    assert refused.headers["www-authenticate"] == "Bearer"
    assert_problem(client.get("/v1/search", params={"q": "x"}, headers={"Authorization": ""}), 401)

    assert_problem(client.get(f"/v1/clusters/{uuid4()}"), 404)
    assert_problem(client.post(f"/v1/clusters/{uuid4()}/action", json={"response_text": "hi"}), 404)
    assert_problem(client.get("/v1/conversations/unknown"), 404)
    assert_problem(client.get("/v1/nowhere"), 404)
    assert_problem(client.delete("/v1/search"), 405)

    unavailable = client.get("/v1/search", params={"q": "x", "mode": "semantic"})
    assert_problem(unavailable, 503)
    assert unavailable.headers["retry-after"] == "1"
    assert client.get("/v1/search", params={"q": "x", "mode": "keyword"}).json()["results"] == []
