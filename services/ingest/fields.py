"""Reading fields of webhook bodies, with errors that name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.errors import InvalidRecord
from shared.records import has_utc_time

# The longest id Chorus stores (a message, user, channel or conversation id): ids are keys of
# unique indexes, and Postgres cannot index a value over about 2,700 bytes.
MAX_ID_CHARS = 256


class InvalidField(InvalidRecord):
    """A record refused for one field's value: `field` names it (dotted), `problem` says what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"'{field}' {problem}")
        self.field = field
        self.problem = problem


def parse_time(value: Any, name: str) -> datetime:
    """An ISO 8601 time as an aware datetime (UTC when the text names no zone) that Postgres can store."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidField(name, f"is not an ISO 8601 time: {str(value)[:40]!r}") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        return has_utc_time(moment)
    except ValueError as error:
        raise InvalidField(name, str(error)) from None


def check_id(value: str | None, name: str) -> None:
    """Refuse an id longer than MAX_ID_CHARS."""
    if value is not None and len(value) > MAX_ID_CHARS:
        raise InvalidField(name, f"is {len(value)} characters long; ids are at most {MAX_ID_CHARS}")
