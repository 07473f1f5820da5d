"""Every refusal of the ingest service is problem details (application/problem+json)."""

from __future__ import annotations

import json

from tests.problems import assert_problem
from tests.services.conftest import APP_KEY, Ingest, sample, sign


def test_every_refusal_of_ingest_is_problem_details(ingest: Ingest) -> None:
    client = ingest.client
    event = sample("raw_events")[0]
    bad_json = b'{"type": "message.new",'
    signed = {"X-Api-Key": APP_KEY, "X-Signature": sign(bad_json), "Content-Type": "application/json"}
    assert_problem(client.post("/webhooks/streamchat", content=bad_json, headers=signed), 400)
    assert_problem(ingest.events([event, dict(event, source="Not A Name")]), 400, "source")
    assert_problem(ingest.tavus({"event_type": "system.shutdown"}), 400)

    unsigned = {"X-Api-Key": APP_KEY, "X-Signature": "0" * 64}
    assert_problem(client.post("/webhooks/streamchat", content=json.dumps(event), headers=unsigned), 401)
    assert_problem(client.post("/webhooks/tavus", json=sample("tavus_callbacks")[0]), 401)
    refused = client.post("/v1/events", json=event, headers={"Authorization": "Bearer chorus_wrong"})
    assert_problem(refused, 401)
    assert refused.headers["www-authenticate"] == "Bearer"

    assert_problem(client.get("/v1/nowhere"), 404)
    assert_problem(client.get("/v1/events"), 405)
    assert_problem(ingest.events([event] * 2000), 413)
    assert_problem(ingest.events(event, **{"Content-Encoding": "br"}), 415)
    assert ingest.events(event).status_code == 202
