"""StreamChat push webhooks: signature check and what a message event means for Chorus."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from services.ingest.fields import parse_time
from shared.errors import InvalidRecord
from shared.hashing import normalize_text

MESSAGE_EVENTS = ("message.new", "message.updated", "message.deleted")
# Members with these channel roles speak for the channel's owner: the creator.
CREATOR_ROLES = frozenset({"owner", "channel_moderator", "moderator", "admin"})


def signature_is_valid(body: bytes, signature: str, secret: str) -> bool:
    """X-Signature is the hex HMAC-SHA256 of the uncompressed body, keyed with the app's secret."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    # Compared as bytes: compare_digest refuses str with non-ASCII characters, which a forged header may carry.
    return hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace"))


@dataclass(frozen=True)
class Person:
    id: str
    name: str | None
    image: str | None


@dataclass(frozen=True)
class MessageEvent:
    """A message.new, message.updated or message.deleted webhook, resolved to creator and fan."""

    event_type: str
    message_id: str
    text: str
    creator_id: str
    channel_cid: str
    channel_type: str | None
    sender: Person
    visitor: Person | None
    direction: Literal["inbound", "outgoing"]
    is_paid: bool
    created_at: datetime
    updated_at: datetime | None
    deleted_at: datetime | None

    @property
    def edited_at(self) -> datetime:
        """When the message got the text this event carries: its last edit, else its creation."""
        return self.updated_at or self.created_at


def event_type(body: dict[str, Any]) -> str:
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidRecord("the webhook body has no 'type'")
    return kind


def parse_message_event(body: dict[str, Any], paid_channel_types: tuple[str, ...] = ()) -> MessageEvent:
    """Read a message webhook body; InvalidRecord names the field that is missing or wrong."""
    kind = event_type(body)
    if kind not in MESSAGE_EVENTS:
        raise InvalidRecord(f"{kind!r} is not a message event")
    message = _object(body, "message")
    sender_fields = _object(message, "user", "message.user")
    sender = Person(
        _text(sender_fields, "id", "message.user.id"),
        _optional(sender_fields, "name"),
        _optional(sender_fields, "image"),
    )
    cid = _optional(body, "cid") or _optional(message, "cid")
    if not cid:
        raise InvalidRecord("the webhook body has no 'cid'")
    members = _members(body)
    creator_id = _creator(body, members, sender.id)
    direction: Literal["inbound", "outgoing"] = "outgoing" if sender.id == creator_id else "inbound"
    visitor = sender if direction == "inbound" else _other_member(members, creator_id)
    channel_type = _optional(body, "channel_type") or cid.split(":", 1)[0]
    created_at = _time(message, "created_at", required=True)
    assert created_at is not None
    return MessageEvent(
        event_type=kind,
        message_id=_text(message, "id", "message.id"),
        text=normalize_text(_optional(message, "text") or ""),
        creator_id=creator_id,
        channel_cid=cid,
        channel_type=channel_type,
        sender=sender,
        visitor=visitor,
        direction=direction,
        is_paid=message.get("is_paid_dm") is True or channel_type in paid_channel_types,
        created_at=created_at,
        updated_at=_time(message, "updated_at"),
        deleted_at=_time(message, "deleted_at") or (_time(body, "created_at") if kind == "message.deleted" else None),
    )


def creator_key(body: dict[str, Any]) -> str:
    """The record key for chorus.raw.streamchat: the creator, so one creator's events stay in order."""
    if event_type(body) not in MESSAGE_EVENTS:
        return _optional(body, "cid") or _optional(body, "channel_id") or "unknown"
    return parse_message_event(body).creator_id


def _members(body: dict[str, Any]) -> list[tuple[str, str | None, dict[str, Any]]]:
    members = body.get("members") or _dict(body.get("channel")).get("members") or []
    if not isinstance(members, list):
        raise InvalidRecord("'members' must be a list")
    found = []
    for member in members:
        if not isinstance(member, dict):
            raise InvalidRecord("each of 'members' must be an object")
        user = _dict(member.get("user"))
        user_id = member.get("user_id") or user.get("id")
        role = member.get("channel_role") or member.get("role")
        if isinstance(user_id, str) and user_id:
            found.append((user_id, role if isinstance(role, str) else None, user))
    return found


def _creator(body: dict[str, Any], members: list[tuple[str, str | None, dict[str, Any]]], sender_id: str) -> str:
    creators = [user_id for user_id, role, _ in members if role in CREATOR_ROLES]
    if sender_id in creators:
        return sender_id
    if creators:
        return creators[0]
    others = [user_id for user_id, _, _ in members if user_id != sender_id]
    if len(others) == 1:
        return others[0]
    created_by = _dict(_dict(body.get("channel")).get("created_by")).get("id")
    if isinstance(created_by, str) and created_by:
        return created_by
    raise InvalidRecord("cannot tell the creator: no member with a creator role and no channel.created_by")


def _other_member(members: list[tuple[str, str | None, dict[str, Any]]], creator_id: str) -> Person | None:
    for user_id, _, user in members:
        if user_id != creator_id:
            return Person(user_id, user.get("name"), user.get("image"))
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _object(container: dict[str, Any], key: str, path: str | None = None) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise InvalidRecord(f"'{path or key}' must be an object")
    return value


def _text(container: dict[str, Any], key: str, path: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRecord(f"'{path}' must be a non-empty string")
    return value


def _optional(container: dict[str, Any], key: str) -> str | None:
    value = container.get(key)
    return value if isinstance(value, str) and value else None


def _time(container: dict[str, Any], key: str, *, required: bool = False) -> datetime | None:
    value = container.get(key)
    if value is None and not required:
        return None
    return parse_time(value, key)
