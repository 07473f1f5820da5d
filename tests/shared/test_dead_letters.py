"""Which tenant a dead letter belongs to, and what a dead letter's id is: no broker needed."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from shared.dead_letters import headers_of, parse_id, tenant_named_by
from shared.records import DeadLetter, utcnow


def letter(
    value: bytes, key: bytes | None = None, truncated: bool = False, headers_b64: list[tuple[str, str]] | None = None
) -> DeadLetter:
    return DeadLetter(
        service="ingest", topic="chorus.raw.events", partition=0, offset=7, key_b64=DeadLetter.encode(key),
        value_b64=DeadLetter.encode(value) or "", value_truncated=truncated, error_class="InvalidRecord",
        reason="bad", failed_at=utcnow(), headers_b64=headers_b64 or [],
    )  # fmt: skip


def test_the_tenant_is_the_records_then_its_headers_then_its_keys() -> None:
    tenant = uuid4()
    assert tenant_named_by(letter(json.dumps({"tenant_id": "acme"}).encode(), f"{tenant}:x".encode())) == "acme"
    header = [("tenant_id", DeadLetter.encode(b"beta") or "")]
    assert tenant_named_by(letter(b"{}", b"x", headers_b64=header)) == "beta"
    assert tenant_named_by(letter(b"\xff not json", f"{tenant}:creator-1".encode())) == str(tenant)
    # A key whose first part is no tenant id, a cut record, a record that names none: no tenant.
    assert tenant_named_by(letter(b"[1, 2]", b"acme:creator-1")) is None
    assert tenant_named_by(letter(json.dumps({"tenant_id": "acme"}).encode()[:5], truncated=True)) is None
    assert tenant_named_by(letter(json.dumps({"tenant_id": 12}).encode())) is None


def test_headers_come_back_as_they_were_sent() -> None:
    sent = [("chorus-correlation-id", b"c-1"), ("tenant_id", b"\x00\xff")]
    kept = [(name, DeadLetter.encode(value) or "") for name, value in sent]
    assert headers_of(letter(b"{}", headers_b64=kept)) == sent
    # Dead letters written before headers were kept still read.
    assert headers_of(DeadLetter.from_bytes(letter(b"{}").to_bytes())) == []


@pytest.mark.parametrize("text", ["3", "a:1", "1:", ":1", "1:2:3", "-1:4"])
def test_an_id_is_partition_colon_offset(text: str) -> None:
    assert parse_id("1:42") == (1, 42)
    with pytest.raises(ValueError, match="partition:offset"):
        parse_id(text)
