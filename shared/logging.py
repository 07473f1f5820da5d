"""Structured JSON log lines, one object a line, with the service's name on each."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# Fields every log line written while they are bound carries: the correlation id of the record
# being processed, its topic and offset (set by shared/stream.py), the tenant.
_BOUND: ContextVar[tuple[tuple[str, Any], ...]] = ContextVar("chorus_log_fields", default=())


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` to every log line written inside the block (in this task or thread only)."""
    merged = {**dict(_BOUND.get()), **{key: value for key, value in fields.items() if value is not None}}
    token = _BOUND.set(tuple(merged.items()))
    try:
        yield
    finally:
        _BOUND.reset(token)


# Attributes every LogRecord has; anything else was passed through `extra=` and is logged too.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object with time, level, service, logger, message and extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            **dict(_BOUND.get()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(service: str, level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The Kafka client logs every reconnect attempt at INFO; warnings are what matter here.
    logging.getLogger("aiokafka").setLevel(max(root.level, logging.WARNING))
    logging.getLogger("uvicorn.access").setLevel(max(root.level, logging.WARNING))
