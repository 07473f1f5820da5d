"""The demo data `chorus up` sends through the ingest endpoints, as a real producer would."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

DEMO_DATA = Path(__file__).resolve().parents[2] / "deploy" / "demo"


def _records(name: str) -> list[dict[str, Any]]:
    lines = (DEMO_DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_demo_data(env: Mapping[str, str]) -> dict[str, int]:
    """Post every demo record; deliveries seen before are dropped by ingest, so this is safe to repeat."""
    accepted = {"streamchat": 0, "tavus": 0, "events": 0}
    with httpx.Client(base_url=env["CHORUS_INGEST_URL"], timeout=30) as client:
        secret = env["CHORUS_STREAMCHAT_API_SECRET"].encode()
        for number, event in enumerate(_records("streamchat_events")):
            body = json.dumps(event).encode()
            response = client.post(
                "/webhooks/streamchat",
                content=body,
                headers={
                    "X-Api-Key": env["CHORUS_STREAMCHAT_API_KEY"],
                    "X-Signature": hmac.new(secret, body, hashlib.sha256).hexdigest(),
                    "X-Webhook-Id": f"demo-{number}",
                    "Content-Type": "application/json",
                },
            )
            response.raise_for_status()
            accepted["streamchat"] += 1
        for callback in _records("tavus_callbacks"):
            client.post(
                "/webhooks/tavus", json=callback, headers={"X-Chorus-Token": env["CHORUS_TAVUS_TOKEN"]}
            ).raise_for_status()
            accepted["tavus"] += 1
        vcons = [
            {"source": "vcon", "event_type": "vcon", "external_id": vcon["uuid"], "payload": vcon}
            for vcon in _records("vcons")
        ]
        response = client.post(
            "/v1/events",
            json=_records("raw_events") + vcons,
            headers={"Authorization": f"Bearer {env['CHORUS_DEMO_API_KEY']}"},
        )
        response.raise_for_status()
        accepted["events"] = int(response.json()["accepted"])
    return accepted
