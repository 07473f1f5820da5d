"""Raw events and vCon records: which documents an event envelope yields."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from services.ingest.vcon import body_text
from shared.errors import InvalidRecord
from shared.hashing import canonical_json, normalize_text, sha256
from shared.records import EventEnvelope

VCON_SOURCE = "vcon"


@dataclass(frozen=True)
class DocumentDraft:
    """A document an event yields, before it has a row."""

    content_type: str
    content_ref: str | None
    text: str
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def event_content_hash(envelope: EventEnvelope) -> bytes:
    """What makes two deliveries of one event the same: everything but delivery metadata."""
    content = envelope.model_dump(mode="json", exclude={"tenant_id", "received_at", "correlation_id"})
    return sha256(canonical_json(content))


def documents_of(envelope: EventEnvelope) -> list[DocumentDraft]:
    """The documents of an event: its text, or for a vCon its subject, dialog and analysis bodies."""
    if envelope.source == VCON_SOURCE:
        return _vcon_documents(envelope)
    text = normalize_text(envelope.text or "")
    return [DocumentDraft("event", None, text, dict(envelope.tags))] if text else []


def vcon_tenant(envelope: EventEnvelope) -> str | None:
    """The tenant a vCon's `tenant` attachment names (its id), if any."""
    for attachment in _attachments(envelope.payload):
        if attachment.get("type") == "tenant":
            body = _json_body(attachment, "tenant")
            if isinstance(body, dict) and isinstance(body.get("id"), str):
                return str(body["id"])
    return None


def _vcon_documents(envelope: EventEnvelope) -> list[DocumentDraft]:
    vcon = envelope.payload
    if not isinstance(vcon.get("vcon"), str):
        raise InvalidRecord("a vcon event's payload must be a vCon object with a 'vcon' version")
    tags = {**envelope.tags, **_vcon_tags(vcon)}
    metadata = {"vcon_uuid": vcon.get("uuid"), "parties": _parties(vcon)}
    drafts = []
    subject = vcon.get("subject")
    if isinstance(subject, str) and normalize_text(subject):
        drafts.append(DocumentDraft("subject", "subject", normalize_text(subject), tags, metadata))
    for kind in ("dialog", "analysis"):
        parts = vcon.get(kind) or []
        if not isinstance(parts, list):
            raise InvalidRecord(f"vCon '{kind}' must be a list")
        for index, part in enumerate(parts):
            text = body_text(part.get("body")) if isinstance(part, dict) else ""
            if text:
                part_metadata = {**metadata, "part_type": part.get("type")}
                drafts.append(DocumentDraft(kind, f"{kind}_{index}", text, tags, part_metadata))
    return drafts


def _vcon_tags(vcon: dict[str, Any]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for attachment in _attachments(vcon):
        if attachment.get("type") != "tags":
            continue
        body = _json_body(attachment, "tags")
        if not isinstance(body, list):
            raise InvalidRecord("a vCon tags attachment must be a JSON array of 'key:value' strings")
        for item in body:
            if isinstance(item, str) and ":" in item:
                key, value = item.split(":", 1)
                tags[key.strip()] = value.strip()
    return tags


def _parties(vcon: dict[str, Any]) -> list[dict[str, str]]:
    parties = vcon.get("parties") or []
    if not isinstance(parties, list):
        raise InvalidRecord("vCon 'parties' must be a list")
    wanted = ("name", "tel", "mailto")
    return [
        {key: party[key] for key in wanted if isinstance(party.get(key), str)}
        for party in parties
        if isinstance(party, dict)
    ]


def _attachments(vcon: dict[str, Any]) -> list[dict[str, Any]]:
    attachments = vcon.get("attachments") or []
    if not isinstance(attachments, list):
        raise InvalidRecord("vCon 'attachments' must be a list")
    return [attachment for attachment in attachments if isinstance(attachment, dict)]


def _json_body(attachment: dict[str, Any], kind: str) -> Any:
    body = attachment.get("body")
    if not isinstance(body, str):
        return body
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        raise InvalidRecord(f"the vCon {kind} attachment's body is not JSON") from None
