"""`chorus tenants` and `chorus keys`: who uses Chorus and the API keys they call it with."""

from __future__ import annotations

import argparse
import asyncio
import sys
from uuid import UUID

import asyncpg

from launcher.commands.common import CommandError, Commands, group, known_tenant, service_pool, table, when
from launcher.settings import Endpoints
from shared import tenants


def register(commands: Commands) -> None:
    tenant_commands = group(commands, "tenants", "manage tenants")
    add = tenant_commands.add_parser("add", help="create a tenant and print its id")
    add.add_argument("name")
    add.set_defaults(run=_tenants_add)
    tenant_commands.add_parser("list", help="every tenant: id, name, created").set_defaults(run=_tenants_list)

    key_commands = group(commands, "keys", "manage API keys")
    create = key_commands.add_parser("create", help="print a new API key for a tenant, alone on the last line")
    create.add_argument("tenant", help="the tenant's name or id")
    create.add_argument("--name", default="", help="a label for the key")
    create.set_defaults(run=_keys_create)
    listing = key_commands.add_parser("list", help="the keys of a tenant, or of every tenant (never the keys)")
    listing.add_argument("tenant", nargs="?", help="the tenant's name or id")
    listing.set_defaults(run=_keys_list)
    revoke = key_commands.add_parser("revoke", help="stop accepting a key, named by its id or by the whole key")
    revoke.add_argument("key", metavar="KEY_OR_ID")
    revoke.set_defaults(run=_keys_revoke)


def _tenants_add(args: argparse.Namespace) -> int:
    name = args.name.strip()
    if not name or not name.isprintable():
        raise CommandError("a tenant's name must be printable text, not empty")
    if _is_uuid(name):
        # Commands take a tenant by name or by id: a name that reads as an id would be ambiguous.
        raise CommandError(f"{name!r} reads as a tenant id; choose a name that does not")

    async def run() -> UUID:
        async with service_pool(Endpoints.from_environment()) as pool:
            try:
                return await tenants.create_tenant(pool, name)
            except asyncpg.UniqueViolationError:
                raise CommandError(f"a tenant named {name!r} exists already; `chorus tenants list` shows it") from None

    print(asyncio.run(run()))
    return 0


def _tenants_list(args: argparse.Namespace) -> int:
    async def run() -> list[tenants.Tenant]:
        async with service_pool(Endpoints.from_environment()) as pool:
            return await tenants.list_tenants(pool)

    found = asyncio.run(run())
    print(
        table(["id", "name", "created"], [[str(tenant.id), tenant.name, when(tenant.created_at)] for tenant in found])
    )
    if not found:
        print("no tenants yet; add one with `chorus tenants add NAME`", file=sys.stderr)
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    async def run() -> str:
        async with service_pool(Endpoints.from_environment()) as pool:
            return await tenants.create_api_key(pool, await known_tenant(pool, args.tenant), args.name)

    key = asyncio.run(run())
    print("Store this key now: Chorus keeps only its hash.", file=sys.stderr)
    print(key)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    async def run() -> list[tuple[str, tenants.ApiKey]]:
        async with service_pool(Endpoints.from_environment()) as pool:
            wanted = await known_tenant(pool, args.tenant) if args.tenant else None
            owners = [tenant for tenant in await tenants.list_tenants(pool) if wanted in (None, tenant.id)]
            return [(owner.name, key) for owner in owners for key in await tenants.list_api_keys(pool, owner.id)]

    keys = asyncio.run(run())
    rows = [
        [name, str(key.id), f"{key.prefix}...", key.name, when(key.created_at), when(key.last_used_at, "never"),
         when(key.revoked_at)]
        for name, key in keys
    ]  # fmt: skip
    print(table(["tenant", "id", "prefix", "name", "created", "last used", "revoked"], rows))
    if not keys:
        print("no API keys; create one with `chorus keys create TENANT`", file=sys.stderr)
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    endpoints = Endpoints.from_environment()

    async def run() -> tuple[tenants.ApiKey, bool] | None:
        async with service_pool(endpoints) as pool:
            return await tenants.revoke_api_key(pool, args.key.strip())

    revoked = asyncio.run(run())
    if revoked is None:
        # The argument may be a whole key: it is not repeated back.
        raise CommandError("no API key has that id or value; `chorus keys list` shows the ids")
    key, now = revoked
    if not now:
        print(f"key {key.id} ({key.prefix}...) was revoked already, at {when(key.revoked_at)}")
        return 0
    seconds = endpoints.common.key_cache_seconds
    print(f"revoked key {key.id} ({key.prefix}...); the services refuse it within {seconds:g}s (their key cache)")
    return 0


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True
