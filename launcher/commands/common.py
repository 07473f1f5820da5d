"""What the `chorus` subcommands share: their error, their database pool and how they print."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TypeAlias
from uuid import UUID

import asyncpg

from launcher.settings import Endpoints, where
from shared import tenants
from shared.db import create_pool

# What `add_subparsers` returns, where each module adds its commands.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandError(Exception):
    """The command cannot do what it was asked; the message says why and what to do, in one line."""


def group(commands: Commands, name: str, summary: str) -> Commands:
    """A command of subcommands (`chorus keys ...`); alone, it prints its own help and fails."""
    parser = commands.add_parser(name, help=summary, description=summary)
    subcommands = parser.add_subparsers(title=f"{name} commands")

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(run=usage)
    return subcommands


def postgres_problem(url: str, error: BaseException, variable: str | None) -> CommandError:
    """One line for a Postgres that cannot be reached or refuses us, naming where, never the password.
    `variable` is the setting that named `url`; None for the embedded stack's."""
    if isinstance(error, OSError | TimeoutError):
        fix = f"check {variable}" if variable else "start it with `make up`"
        return CommandError(f"cannot reach Postgres at {where(url)} ({error or type(error).__name__}); {fix}")
    if type(error) is asyncpg.InvalidAuthorizationSpecificationError:
        # "role ... does not exist": the services' role comes with the migrations.
        return CommandError(f"Postgres at {where(url)} refused: {error}; `chorus migrate` creates the services' role")
    return CommandError(f"Postgres at {where(url)} refused: {error}")


@asynccontextmanager
async def service_pool(endpoints: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    """A small pool of the services' role: the commands work under row-level security as they do."""
    url = endpoints.database_url
    try:
        pool = await create_pool(url, max_size=2)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        variable = "CHORUS_DATABASE_URL" if endpoints.external_database else None
        raise postgres_problem(url, error, variable) from None
    except ValueError:
        # Each connection registers the vector type, which only the migrations create.
        raise CommandError(f"the database at {where(url)} lacks Chorus's schema; run `chorus migrate`") from None
    try:
        yield pool
    finally:
        await pool.close()


async def known_tenant(pool: asyncpg.Pool, name_or_id: str) -> UUID:
    tenant_id = await tenants.resolve_tenant(pool, name_or_id)
    if tenant_id is None:
        raise CommandError(f"no tenant named {name_or_id!r}; `chorus tenants list` shows them")
    return tenant_id


def when(moment: datetime | None, absent: str = "-") -> str:
    return absent if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, for people; scripts split on two or more spaces."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = (
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in [headers, *rows]
    )
    return "\n".join(line.rstrip() for line in lines)
