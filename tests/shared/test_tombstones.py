"""Erasure tombstones: one keyed digest per kind and value, and every string of a payload as a party candidate."""

from __future__ import annotations

import hashlib
import hmac

from services.ingest.tombstones import MAX_PARTY_CHARS, strings_of
from shared.tombstones import digest, event_value


def test_a_digest_is_the_hmac_of_kind_and_value_under_the_tenants_key() -> None:
    key = bytes(range(32))
    assert digest(key, "party", "fan-maya") == hmac.new(key, b"party\x00fan-maya", hashlib.sha256).digest()
    assert digest(key, "message", "m1") != digest(key, "conversation", "m1")
    assert digest(key, "party", "fan-maya") != digest(bytes(32), "party", "fan-maya")
    assert digest(key, "party", "\ud800") != digest(key, "party", "")  # a lone surrogate hashes, it does not raise
    assert event_value("jira", "A\x00B") != event_value("jira\x00A", "B")


def test_every_string_at_any_depth_is_a_candidate_but_no_key_and_no_long_text() -> None:
    payload = {
        "user": {"id": "fan-maya", "profile": {"phones": ["+15550100777", 7, None, True]}},
        "members": [{"user_id": "creator-jay"}],
        "text": "x" * (MAX_PARTY_CHARS + 1),
    }
    assert strings_of(payload) == {"fan-maya", "+15550100777", "creator-jay"}
    assert strings_of(("a", {"b": "c"})) == {"a", "c"}
