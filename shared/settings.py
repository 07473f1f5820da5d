"""Typed settings read once from an environment mapping."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is missing or cannot be read as its type."""


def setting(env: str, default: Any, doc: str, *, secret: bool = False, minimum: float | None = None) -> Any:
    """Declare a settings field read from the environment variable `env`; a number below `minimum`
    is refused at load, like a value outside a `Literal` type's choices."""
    return dataclasses.field(default=default, metadata={"env": env, "doc": doc, "secret": secret, "minimum": minimum})


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build the settings dataclass `cls` from `environ` (the process environment by default)."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.metadata["env"]
        raw = environ.get(name)
        if raw is None:
            continue
        try:
            values[field.name] = _parse(raw, hints[field.name])
        except ValueError as error:
            raise SettingsError(f"{name}={raw!r} is not valid: {error}") from None
        minimum = field.metadata.get("minimum")
        if minimum is not None and values[field.name] is not None and values[field.name] < minimum:
            raise SettingsError(f"{name}={raw!r} is not valid: expected a number of at least {minimum:g}")
    return cls(**values)


def load_or_exit(cls: type[T]) -> T:
    """The settings of a process starting up; a bad value ends it with the one sentence that names it."""
    try:
        return load(cls)
    except SettingsError as error:
        print(f"chorus: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def describe(cls: type[Any]) -> list[tuple[str, str, str, bool]]:
    """(env var, default as text, description, secret) for every field of `cls`."""
    rows = []
    for field in dataclasses.fields(cls):
        default = field.default
        rows.append(
            (
                field.metadata["env"],
                _render(default),
                field.metadata["doc"],
                field.metadata["secret"],
            )
        )
    return rows


def redacted(settings: Any) -> dict[str, Any]:
    """The settings as a dict with every secret replaced, fit for a log line."""
    out = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        out[field.name] = "***" if field.metadata["secret"] and value else value
    return out


def _parse(raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        inner = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return None if raw == "" else _parse(raw, inner[0])
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if raw not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError("expected true or false")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError("expected a whole number") from None
    if kind is float:
        try:
            number = float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(number):
            raise ValueError("expected a finite number")
        return number
    if origin is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    if value is None:
        return ""
    return str(value)


@dataclasses.dataclass(frozen=True)
class CommonSettings:
    """What every service needs: where Kafka and Postgres are, and how to log."""

    kafka_bootstrap: str = setting(
        "CHORUS_KAFKA_BOOTSTRAP", "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated."
    )
    database_url: str = setting(
        "CHORUS_DATABASE_URL",
        "postgresql://chorus_app:chorus_app@127.0.0.1:5432/chorus",
        "Postgres URL the services use; its role is a non-owner role under row-level security.",
        secret=True,
    )
    topic_prefix: str = setting(
        "CHORUS_TOPIC_PREFIX",
        "",
        "Prefix put before every topic name (test isolation, shared clusters).",
    )
    topic_partitions: int = setting(
        "CHORUS_TOPIC_PARTITIONS",
        6,
        "Partitions of each topic `chorus topics` and `chorus up` create; they bound consumers.",
        minimum=1,
    )
    topic_replication_factor: int = setting(
        "CHORUS_TOPIC_REPLICATION_FACTOR",
        1,
        "Replicas of each topic created: 1 for one broker, 3 for a cluster.",
        minimum=1,
    )
    topic_retention_hours: float = setting(
        "CHORUS_TOPIC_RETENTION_HOURS",
        168.0,
        "How long chorus.docs, chorus.embedded, chorus.replies and chorus.dlq keep records.",
    )
    raw_topic_retention_hours: float = setting(
        "CHORUS_RAW_TOPIC_RETENTION_HOURS",
        168.0,
        "How long the raw topics keep what producers sent: the horizon after which erased data is gone from Kafka too.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "CHORUS_LOG_LEVEL", "INFO", "Log level of the JSON log lines: DEBUG, INFO, WARNING or ERROR."
    )
    host: str = setting("CHORUS_HOST", "127.0.0.1", "Address the service's HTTP server binds to.")
    key_cache_seconds: float = setting(
        "CHORUS_KEY_CACHE_SECONDS",
        30.0,
        "How long ingest and search trust a checked API key without a lookup: a revoked key works this long at most.",
    )
