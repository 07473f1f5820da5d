"""Versioned SQL migrations, applied in order, each once, recorded in chorus_meta.schema_migrations."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from urllib.parse import unquote, urlsplit

import asyncpg

SERVICE_GROUP_ROLE = "chorus_service"
_LOCK_KEY = 7_031_337  # any constant: serializes concurrent migrators on one database
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database's migration history does not match the migrations shipped with Chorus."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def shipped_migrations() -> list[Migration]:
    """Every migration file in shared/migrations, in version order."""
    found = []
    for entry in resources.files("shared.migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)


async def migrate(admin_url: str, service_url: str | None = None, *, embedding_dim: int = 384) -> list[int]:
    """Apply the migrations not yet applied; returns their versions (empty when up to date).

    `admin_url` must be allowed to create tables and extensions. When `service_url` is given,
    its user is made a login member of the services' group role, so the services never run as
    the owner.
    """
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        applied = await _applied_checksums(connection)
        newly_applied = []
        for migration in shipped_migrations():
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed after it was "
                        "applied; add a new migration instead of editing an applied one"
                    )
                continue
            sql = migration.sql.replace("{{embedding_dim}}", str(int(embedding_dim)))
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO chorus_meta.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            newly_applied.append(migration.version)
        if service_url is not None:
            await _ensure_service_login(connection, service_url)
        return newly_applied
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
        await connection.close()


async def _applied_checksums(connection: asyncpg.Connection) -> dict[int, str]:
    await connection.execute(
        """
        CREATE SCHEMA IF NOT EXISTS chorus_meta;
        CREATE TABLE IF NOT EXISTS chorus_meta.schema_migrations (
            version     integer PRIMARY KEY,
            name        text NOT NULL,
            checksum    text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        );
        """
    )
    rows = await connection.fetch("SELECT version, checksum FROM chorus_meta.schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


async def _ensure_service_login(connection: asyncpg.Connection, service_url: str) -> None:
    parts = urlsplit(service_url)
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    admin_user = await connection.fetchval("SELECT current_user")
    if not user or user == admin_user:
        raise MigrationError(
            "CHORUS_DATABASE_URL must name a role of its own for the services, not the owner "
            f"{admin_user!r}: the owner is not bound by row-level security"
        )
    role = await connection.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", user)
    if role is None:
        create = "CREATE ROLE %I LOGIN PASSWORD %L" if password else "CREATE ROLE %I LOGIN"
        args = (user, password) if password else (user,)
        await connection.execute(await connection.fetchval(f"SELECT format('{create}', {_params(args)})", *args))
    elif role["rolsuper"] or role["rolbypassrls"]:
        raise MigrationError(
            f"the services' database role {user!r} is a superuser or may bypass row-level "
            "security; give the services a plain role"
        )
    await connection.execute(
        await connection.fetchval("SELECT format('GRANT %I TO %I', $1::text, $2::text)", SERVICE_GROUP_ROLE, user)
    )


def _params(args: tuple[str, ...]) -> str:
    return ", ".join(f"${index}::text" for index in range(1, len(args) + 1))
