"""Reading fields of webhook bodies, with errors that name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.errors import InvalidRecord


def parse_time(value: Any, name: str) -> datetime:
    """An ISO 8601 time as an aware datetime (UTC when the text names no zone)."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRecord(f"'{name}' is not an ISO 8601 time: {str(value)[:40]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
