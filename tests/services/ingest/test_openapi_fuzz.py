"""Schemathesis against the ingest service's /openapi.json, its documented bodies signed and authenticated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from tests.metrics import MetricDelta
from tests.openapi_fuzz import run_schemathesis, served
from tests.services.conftest import APP_KEY, APP_SECRET, Tenant
from tests.services.ingest.schemathesis_hooks import CREDENTIALS


def test_generated_requests_get_only_documented_answers(
    ingest_settings: IngestSettings, tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = {"api_key": tenant.api_key, "tavus_token": tenant.tavus_token,
                   "app_key": APP_KEY, "app_secret": APP_SECRET}  # fmt: skip
    monkeypatch.setenv(CREDENTIALS, json.dumps(credentials))
    accepted = {
        endpoint: MetricDelta("chorus_ingest_requests_total", endpoint=endpoint, status=status)
        for endpoint, status in (("/webhooks/streamchat", "200"), ("/webhooks/tavus", "200"), ("/v1/events", "202"))
    }
    with served(create_app(ingest_settings)) as url:
        run_schemathesis(url, tmp_path, hooks="tests.services.ingest.schemathesis_hooks", at_least=300)
    # Generated from the documented bodies, requests were accepted too, not only refused.
    assert all(delta.delta() >= 1 for delta in accepted.values()), {name: d.delta() for name, d in accepted.items()}
