"""`chorus streamchat` and `chorus tavus`: connecting a tenant's StreamChat app and Tavus callbacks."""

from __future__ import annotations

import argparse
import asyncio
import sys

from launcher.commands.common import CommandError, Commands, group, known_tenant, service_pool
from launcher.settings import Endpoints
from services.ingest import credentials


def register(commands: Commands) -> None:
    streamchat = group(commands, "streamchat", "connect a tenant's StreamChat app")
    connect = streamchat.add_parser(
        "connect", help="route a StreamChat app's webhooks to a tenant and post the tenant's replies with it"
    )
    connect.add_argument("tenant", help="the tenant's name or id")
    connect.add_argument("--api-key", required=True, help="the app's API key (StreamChat dashboard)")
    connect.add_argument("--api-secret", required=True, help="the app's secret; - reads it from standard input")
    connect.add_argument(
        "--paid-channel-types",
        nargs="+",
        default=[],
        metavar="TYPE",
        help="channel types whose messages are paid (space- or comma-separated)",
    )
    connect.set_defaults(run=_streamchat_connect)
    disconnect = streamchat.add_parser(
        "disconnect", help="forget a tenant's StreamChat app (all of them without --api-key)"
    )
    disconnect.add_argument("tenant", help="the tenant's name or id")
    disconnect.add_argument("--api-key", help="only the app with this API key")
    disconnect.set_defaults(run=_streamchat_disconnect)

    tavus = group(commands, "tavus", "Tavus callbacks of a tenant")
    token = tavus.add_parser(
        "token", help="print a new token for the tenant's Tavus callback URL, alone on the last line"
    )
    token.add_argument("tenant", help="the tenant's name or id")
    token.add_argument("--revoke", action="store_true", help="revoke the tenant's tokens instead")
    token.set_defaults(run=_tavus_token)


def _streamchat_connect(args: argparse.Namespace) -> int:
    api_key = args.api_key.strip()
    # On the command line a secret is seen by `ps` and kept in shell history; `-` avoids both.
    api_secret = (sys.stdin.readline() if args.api_secret == "-" else args.api_secret).strip()
    if not api_key or not api_secret:
        raise CommandError("--api-key and --api-secret must not be empty")
    paid = tuple(
        dict.fromkeys(part.strip() for value in args.paid_channel_types for part in value.split(",") if part.strip())
    )
    endpoints = Endpoints.from_environment()

    async def run() -> bool:
        async with service_pool(endpoints) as pool:
            tenant_id = await known_tenant(pool, args.tenant)
            existing = await credentials.streamchat_app(pool, api_key)
            if existing is not None and existing.tenant_id != tenant_id:
                raise CommandError(
                    f"the StreamChat app {api_key!r} is connected to another tenant; "
                    "`chorus streamchat disconnect TENANT --api-key KEY` it there first"
                )
            await credentials.add_streamchat_app(pool, tenant_id, api_key, api_secret, paid)
            return existing is not None

    updated = asyncio.run(run())
    verb = "updated the StreamChat app" if updated else "connected the StreamChat app"
    print(f"{verb} {api_key} of tenant {args.tenant}" + (f" (paid channel types: {', '.join(paid)})" if paid else ""))
    webhook = f"{endpoints.service_url('ingest')}/webhooks/streamchat"
    print(f"In StreamChat's dashboard, set the app's webhook URL to {webhook} (at an address StreamChat can reach)")
    return 0


def _streamchat_disconnect(args: argparse.Namespace) -> int:
    async def run() -> list[str]:
        async with service_pool(Endpoints.from_environment()) as pool:
            tenant_id = await known_tenant(pool, args.tenant)
            return await credentials.disconnect_streamchat_apps(pool, tenant_id, args.api_key)

    removed = asyncio.run(run())
    if not removed:
        which = f"no StreamChat app {args.api_key!r}" if args.api_key else "no StreamChat app"
        raise CommandError(f"tenant {args.tenant!r} has {which} connected")
    print(f"disconnected the StreamChat app {', '.join(removed)} of tenant {args.tenant}")
    return 0


def _tavus_token(args: argparse.Namespace) -> int:
    endpoints = Endpoints.from_environment()

    async def run() -> str | int:
        async with service_pool(endpoints) as pool:
            tenant_id = await known_tenant(pool, args.tenant)
            if args.revoke:
                return await credentials.revoke_tavus_tokens(pool, tenant_id)
            return await credentials.create_tavus_token(pool, tenant_id)

    result = asyncio.run(run())
    if isinstance(result, int):
        print(f"revoked {result} Tavus token(s) of tenant {args.tenant}; callbacks with them are refused from now on")
        return 0
    callback = f"{endpoints.service_url('ingest')}/webhooks/tavus?token=TOKEN"
    print("Store this token now: Chorus keeps only its hash.", file=sys.stderr)
    print(f"Give Tavus the callback_url {callback}, TOKEN being this token:", file=sys.stderr)
    print(result)
    return 0
