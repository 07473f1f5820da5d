import io
import json

import asyncpg

from services.ingest.events import documents_of
from services.ingest.publish import publish_lines
from shared.db import tenant_transaction
from shared.records import EventEnvelope
from tests.services.conftest import Ingest, make_tenant, sample

RAW = "SELECT count(*) FROM raw_events"
DOCUMENTS = "SELECT count(*) FROM documents"


def test_a_vcon_yields_its_subject_dialog_and_analysis_with_tags() -> None:
    vcon = sample("vcons")[1]
    envelope = EventEnvelope(source="vcon", event_type="vcon", external_id=vcon["uuid"], payload=vcon)
    drafts = documents_of(envelope)
    assert [(draft.content_type, draft.content_ref) for draft in drafts] == [
        ("subject", "subject"), ("dialog", "dialog_0"), ("dialog", "dialog_1"), ("analysis", "analysis_0"),
    ]  # fmt: skip
    assert drafts[0].tags == {"status": "resolved", "priority": "urgent", "topic": "outage", "region": "eu"}
    assert [party["name"] for party in drafts[0].metadata["parties"]] == [party["name"] for party in vcon["parties"]]


async def test_the_sample_events_are_stored_once_each_with_shared_text_stored_once(ingest: Ingest) -> None:
    events = sample("raw_events")
    first, rest = events[:10], events[10:]
    assert ingest.events(first[0]).status_code == 202
    assert ingest.events(first[1:]).json() == {"accepted": 9}
    ndjson = "\n".join(json.dumps(event) for event in rest).encode()
    response = ingest.client.post(
        "/v1/events", content=ndjson,
        headers={"Authorization": f"Bearer {ingest.tenant.api_key}", "Content-Type": "application/x-ndjson"},
    )  # fmt: skip
    assert response.json() == {"accepted": 20}
    assert await ingest.wait_for(RAW, 27) == 27
    assert await ingest.wait_for(DOCUMENTS, 26) == 26
    async with tenant_transaction(ingest.pool, ingest.tenant.id) as db:
        shared = await db.fetch(
            "SELECT d.text, array_agg(r.external_id ORDER BY r.external_id) AS events FROM documents d "
            "JOIN document_references x ON x.document_id = d.id JOIN raw_events r ON r.id = x.raw_event_id "
            "GROUP BY d.id HAVING count(*) > 1"
        )
        statuses = await db.fetch("SELECT DISTINCT status FROM raw_events")
        tags = await db.fetchval("SELECT tags FROM documents WHERE external_id = 'BKG-412/created'")
    assert [(row["text"][:20], row["events"]) for row in shared] == [
        ("Declaring SEV2 for b", ["C01ANNOUNC7/1794996662.595331", "C03INCDNT42/1794996614.895177"])
    ]
    assert [row["status"] for row in statuses] == ["processed"]
    assert tags == events[0]["tags"]
    metrics = ingest.client.get("/metrics").text
    assert "chorus_ingest_duplicates_total" in metrics


async def test_vcons_over_http_belong_to_the_keys_tenant(ingest: Ingest) -> None:
    vcons = sample("vcons")
    envelopes = [{"source": "vcon", "event_type": "vcon", "external_id": v["uuid"], "payload": v} for v in vcons]
    assert ingest.events(envelopes).json() == {"accepted": 3}
    assert await ingest.wait_for(DOCUMENTS, 10) == 10
    async with tenant_transaction(ingest.pool, ingest.tenant.id) as db:
        parts = await db.fetch("SELECT content_type, count(*) FROM documents GROUP BY 1 ORDER BY 1")
        outage = await db.fetchval('SELECT count(*) FROM documents WHERE tags @> \'{"topic": "outage"}\'')
    assert [tuple(row) for row in parts] == [("analysis", 3), ("dialog", 4), ("subject", 3)]
    assert outage == 4


async def test_published_vcons_go_to_the_tenant_their_attachment_names(ingest: Ingest, pool: asyncpg.Pool) -> None:
    globex = await make_tenant(pool, "globex", "globex-app", "s1")
    initech = await make_tenant(pool, "initech", "initech-app", "s2")
    lines = [
        json.dumps({"source": "vcon", "event_type": "vcon", "external_id": v["uuid"], "payload": v}).encode()
        for v in sample("vcons")
    ]
    progress = io.StringIO()
    summary = await publish_lines(
        [*lines, b"{not json", b'{"source": "vcon"}'], ingest.env["CHORUS_KAFKA_BOOTSTRAP"],
        topic_prefix=ingest.env["CHORUS_TOPIC_PREFIX"], progress=progress,
    )  # fmt: skip
    assert (summary.sent, summary.failed) == (3, 2)
    assert summary.problems[0].startswith("line 4: line 4 is not valid JSON")
    assert "event_type: Field required" in summary.problems[1]
    assert "5/5 lines  sent 3  failed 2" in progress.getvalue()
    for tenant, expected in ((globex, 7), (initech, 3)):
        ingest.tenant = tenant
        assert await ingest.wait_for(DOCUMENTS, expected) == expected


def test_an_invalid_event_is_a_400_that_names_each_problem(ingest: Ingest) -> None:
    good = sample("raw_events")[0]
    response = ingest.events([good, {"source": "Slack!", "external_id": ""}, dict(good, tags={"a": 1})])
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["title"], body["status"]) == ("Bad Request", 400)
    assert body["detail"] == "2 of 3 events are invalid; none was accepted"
    assert {(p["event"], p["field"]) for p in body["errors"]} == {
        (1, "source"), (1, "event_type"), (1, "external_id"), (2, "tags.a"),
    }  # fmt: skip


def test_events_need_a_valid_api_key(ingest: Ingest) -> None:
    event = sample("raw_events")[0]
    assert ingest.client.post("/v1/events", json=event).status_code == 401
    wrong = ingest.client.post("/v1/events", json=event, headers={"Authorization": "Bearer chorus_wrong"})
    assert (wrong.status_code, wrong.headers["www-authenticate"]) == (401, "Bearer")
    assert ingest.events(dict(event, tenant_id="someone-else")).status_code == 400
