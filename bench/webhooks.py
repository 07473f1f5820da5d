"""StreamChat webhook bodies and signatures, as StreamChat sends them, for benchmarks and tests."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any


def direct_message(
    creator_id: str,
    visitor_id: str,
    message_id: str,
    text: str,
    created_at: datetime,
    *,
    kind: str = "message.new",
    from_creator: bool = False,
    channel_type: str = "messaging",
    paid: bool = False,
) -> dict[str, Any]:
    """A `kind` webhook of a one-to-one channel between a creator and a visitor (the fan)."""
    channel_id = f"dm-{creator_id}-{visitor_id}"
    sender = creator_id if from_creator else visitor_id
    stamp = created_at.isoformat().replace("+00:00", "Z")
    user = {
        "id": sender,
        "name": sender.replace("-", " ").title(),
        "image": f"https://avatars.example.com/{sender}.png",
    }
    message: dict[str, Any] = {
        "id": message_id, "text": text, "type": "regular", "cid": f"{channel_type}:{channel_id}", "user": user,
        "created_at": stamp, "updated_at": stamp,
    }  # fmt: skip
    if paid:
        message["is_paid_dm"] = True
    return {
        "type": kind, "cid": f"{channel_type}:{channel_id}", "channel_id": channel_id, "channel_type": channel_type,
        "message": message, "user": user, "created_at": stamp,
        "members": [
            {"user_id": creator_id, "user": {"id": creator_id}, "channel_role": "channel_moderator"},
            {"user_id": visitor_id, "user": {"id": visitor_id, "image": f"https://avatars.example.com/{visitor_id}.png"},
             "channel_role": "channel_member"},
        ],
    }  # fmt: skip


def signature(body: bytes, secret: str) -> str:
    """StreamChat's X-Signature: the hex HMAC-SHA256 of the raw body, keyed with the app's API secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(body: bytes, api_key: str, secret: str, webhook_id: str) -> dict[str, str]:
    return {
        "X-Api-Key": api_key,
        "X-Signature": signature(body, secret),
        "X-Webhook-Id": webhook_id,
        "Content-Type": "application/json",
    }
