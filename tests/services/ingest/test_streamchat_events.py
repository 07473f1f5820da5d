"""StreamChat webhooks without a server: the signature check and what a message event means."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest

from services.ingest.streamchat import creator_key, parse_message_event, signature_is_valid
from shared.errors import InvalidRecord

SECRET = "app-secret-0123456789abcdef0123456789abcdef"
BODY = b'{"type":"message.new","cid":"messaging:dm"}'
SIGNATURE = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()


def test_the_hmac_of_the_body_with_the_apps_secret_is_accepted() -> None:
    assert signature_is_valid(BODY, SIGNATURE, SECRET)
    assert signature_is_valid(BODY, f" {SIGNATURE.upper()}\n", SECRET)


@pytest.mark.parametrize(
    ("body", "signature", "secret"),
    [
        (BODY + b" ", SIGNATURE, SECRET),
        (BODY, SIGNATURE, SECRET + "x"),
        (BODY, SIGNATURE[:-1], SECRET),
        (BODY, "", SECRET),
        (BODY, "é" * 64, SECRET),
    ],
    ids=["other-body", "other-secret", "cut", "empty", "non-ascii"],
)
def test_anything_else_is_refused_without_an_error(body: bytes, signature: str, secret: str) -> None:
    assert signature_is_valid(body, signature, secret) is False


def message_event(kind: str = "message.new", sender: str = "fan-maya", **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "cid": "messaging:dm-jay-maya",
        "created_at": "2026-11-20T19:05:00Z",
        "message": {"id": "m-1", "text": "  Cafe\u0301 tonight?\x00 ", "user": {"id": sender, "name": "Someone"},
                    "created_at": "2026-11-20T19:02:11.5Z", "updated_at": None},
        "members": [
            {"user_id": "creator-jay", "channel_role": "owner", "user": {"id": "creator-jay", "name": "Jay"}},
            {"user_id": "fan-maya", "channel_role": "channel_member", "user": {"id": "fan-maya", "name": "Maya"}},
        ],
        **extra,
    }  # fmt: skip


def test_a_fans_message_is_inbound_with_normalized_text_and_utc_times() -> None:
    event = parse_message_event(message_event())
    assert (event.creator_id, event.direction, event.visitor and event.visitor.id) == (
        "creator-jay", "inbound", "fan-maya"
    )  # fmt: skip
    assert event.text == "Caf\u00e9 tonight?"
    assert event.created_at == datetime(2026, 11, 20, 19, 2, 11, 500000, tzinfo=UTC)
    assert (event.channel_type, event.is_paid, event.deleted_at) == ("messaging", False, None)


def test_the_creators_message_is_outgoing_and_the_visitor_is_the_fan() -> None:
    event = parse_message_event(message_event(sender="creator-jay"))
    assert (event.direction, event.visitor and event.visitor.id, event.visitor and event.visitor.name) == (
        "outgoing", "fan-maya", "Maya"
    )  # fmt: skip


def test_without_members_the_channels_creator_is_the_creator() -> None:
    body = message_event(members=[], channel={"created_by": {"id": "creator-jay"}})
    assert parse_message_event(body).creator_id == "creator-jay"


def test_a_group_without_roles_or_creator_is_refused() -> None:
    members = [{"user_id": name} for name in ("fan-a", "fan-b", "fan-maya")]
    with pytest.raises(InvalidRecord, match="cannot tell the creator"):
        parse_message_event(message_event(members=members))


def test_a_deletion_without_its_own_time_is_dated_by_the_event() -> None:
    event = parse_message_event(message_event("message.deleted"))
    assert event.deleted_at == datetime(2026, 11, 20, 19, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "reason"),
    [({}, "has no 'type'"), ({"type": ""}, "has no 'type'"), ({"type": "reaction.new"}, "not a message event"),
     (message_event(message={"id": "m-1", "user": {"id": ""}}), "'message.user.id' must be a non-empty string")],
)  # fmt: skip
def test_what_is_not_a_readable_message_event_is_an_invalid_record(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        parse_message_event(body)


def test_the_record_key_is_the_creator_or_else_the_channel() -> None:
    assert creator_key(message_event()) == "creator-jay"
    assert creator_key({"type": "channel.created", "cid": "messaging:x"}) == "messaging:x"
    assert creator_key({"type": "user.banned", "channel_id": "x"}) == "x"
    assert creator_key({"type": "health.check"}) == "unknown"
