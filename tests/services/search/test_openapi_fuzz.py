"""Schemathesis against the search service's /openapi.json, served over real HTTP, with a valid key."""

from __future__ import annotations

from pathlib import Path

from services.search.app import create_app
from services.search.settings import SearchSettings
from shared.settings import load
from tests.openapi_fuzz import run_schemathesis, served
from tests.services.search.conftest import Search


def test_generated_requests_get_only_documented_answers(
    search: Search, services: dict[str, str], tmp_path: Path
) -> None:
    with served(create_app(load(SearchSettings, services))) as url:
        run_schemathesis(url, tmp_path, headers={"Authorization": f"Bearer {search.ingest.tenant.api_key}"})
