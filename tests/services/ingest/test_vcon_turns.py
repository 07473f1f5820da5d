"""A vCon dialog or analysis whose body is a list of turns is stored as one `speaker: message` a line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.ingest.vcon import body_text
from shared.db import tenant_transaction
from tests.services.conftest import Ingest

# A vCon shaped like the vCon server's own fixtures: a dialog of role/content turns, a transcript
# analysis whose body is a JSON string of speaker/message turns, and an analysis of other JSON.
SAMPLE = Path(__file__).parents[2] / "fixtures" / "vcon_turns.json"


async def test_turns_become_lines_through_the_ingest_endpoint(ingest: Ingest) -> None:
    vcon = json.loads(SAMPLE.read_text())
    envelope = {"source": "vcon", "event_type": "vcon", "external_id": vcon["uuid"], "payload": vcon}
    assert ingest.events([envelope]).json() == {"accepted": 1}
    assert await ingest.wait_for("SELECT count(*) FROM documents", 4) == 4
    async with tenant_transaction(ingest.pool, ingest.tenant.id) as db:
        rows = await db.fetch("SELECT content_ref, text FROM documents ORDER BY content_ref")
    texts = {row["content_ref"]: row["text"] for row in rows}
    assert texts["dialog_0"] == (
        "customer: My router drops the wifi every evening around eight.\n"
        "agent: Does the light on the front turn orange when it happens?\n"
        "customer: Yes, orange, then it comes back after a minute."
    )
    assert texts["analysis_0"].splitlines() == [
        "Marisol Ortega: The router drops the connection every evening.",
        "Dev Patel: An orange light means the line resynchronised; I will replace the filter and send a new "
        "power supply.",
        "Marisol Ortega: Thank you, the replacement can go to the billing address.",
    ]
    # Not turns: kept as JSON, nothing of it lost.
    assert json.loads(texts["analysis_1"]) == [{"label": "neutral", "score": 0.4}]
    assert texts["subject"] == "Router keeps dropping the connection"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("Customer: it is down\nAgent: looking", "Customer: it is down\nAgent: looking"),
        ("[draft] see the notes", "[draft] see the notes"),  # prose that starts like a list
        ("[1, 2", "[1, 2"),  # not JSON: the text as it is
        ('[{"speaker": "Ana", "message": "hi"}]', "Ana: hi"),
        ([{"speaker": 0, "message": "party index"}, {"message": "no speaker"}], "0: party index\nno speaker"),
        ([{"role": "user", "content": "  "}, {"role": "assistant", "content": "ok"}], "assistant: ok"),
        ([{"speaker": "Ana", "message": "hi"}, "aside"], '[{"message": "hi", "speaker": "Ana"}, "aside"]'),
        ([{"speaker": "Ana", "words": "hi"}], '[{"speaker": "Ana", "words": "hi"}]'),
        ([], "[]"),
        ({"said": "still down"}, '{"said": "still down"}'),
        (None, ""),
        (7, ""),
    ],
)
def test_only_a_list_of_turns_becomes_lines(body: Any, text: str) -> None:
    assert body_text(body) == text
