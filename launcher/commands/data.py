"""`chorus publish` and `chorus reembed`: backfills and model changes over what is stored."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from launcher.commands.common import CommandError, Commands, known_tenant, service_pool
from launcher.settings import Endpoints
from shared import tenants
from shared.embedding.settings import EmbeddingSettings
from shared.settings import load

if TYPE_CHECKING:
    from services.ingest.publish import PublishSummary


def register(commands: Commands) -> None:
    publish = commands.add_parser("publish", help="send a JSONL file of events to chorus.raw.events (backfills)")
    publish.add_argument("file", type=Path)
    publish.add_argument("--source", help="set this source on every event")
    publish.add_argument("--tenant", help="set this tenant (name or id) on every event")
    publish.set_defaults(run=_publish)

    reembed = commands.add_parser("reembed", help="re-embed existing documents with another model (resumable)")
    reembed.add_argument("--model", required=True, help="the model every document should end with")
    reembed.add_argument("--tenant", help="only this tenant (name or id); all tenants without it")
    reembed.set_defaults(run=_reembed)


def _publish(args: argparse.Namespace) -> int:
    from services.ingest.publish import publish_lines

    if not args.file.is_file():
        raise CommandError(f"{args.file} is not a file")
    endpoints = Endpoints.from_environment()

    async def run() -> PublishSummary:
        # Every event's tenant is looked up before anything is sent: ingest dead-letters an event
        # whose tenant it does not know, so sending it would only look like success.
        async with service_pool(endpoints) as pool:
            tenant = str(await known_tenant(pool, args.tenant)) if args.tenant else None
            return await publish_lines(
                args.file.read_bytes().splitlines(),
                endpoints.kafka_bootstrap,
                topic_prefix=endpoints.common.topic_prefix,
                source=args.source,
                tenant=tenant,
                resolve_tenant=partial(tenants.resolve_tenant, pool),
            )

    summary = asyncio.run(run())
    for problem in summary.problems:
        print(problem, file=sys.stderr)
    print(f"sent {summary.sent}, failed {summary.failed}")
    return 0 if summary.failed == 0 else 1


def _reembed(args: argparse.Namespace) -> int:
    from services.embed.reembed import reembed
    from shared.embedding import create_provider
    from shared.embedding.local import MODEL_NAME

    endpoints = Endpoints.from_environment()
    settings = load(EmbeddingSettings, endpoints.environ)
    if settings.embedding_provider == "local":
        variants: dict[str, Literal["int8", "fp32"]] = {MODEL_NAME: "fp32", f"{MODEL_NAME}-int8": "int8"}
        if args.model not in variants:
            raise CommandError(f"the local provider has the models {', '.join(variants)}")
        settings = dataclasses.replace(settings, local_model_variant=variants[args.model])
    elif settings.embedding_provider == "openai":
        settings = dataclasses.replace(settings, openai_model=args.model)
    provider = create_provider(settings)
    if provider.model != args.model:
        raise CommandError(f"the {settings.embedding_provider} provider makes {provider.model!r}")

    position = Path(endpoints.settings.home).resolve() / "reembed" / f"{args.model}.json"

    async def run() -> None:
        try:
            async with service_pool(endpoints) as pool:
                tenant_ids = (
                    [await known_tenant(pool, args.tenant)] if args.tenant else await tenants.all_tenant_ids(pool)
                )
                summary = await reembed(pool, provider, tenant_ids, position)
        finally:
            await provider.close()
        print(f"re-embedded {summary.embedded} documents of {summary.tenants} tenants in {summary.seconds:.1f}s")

    asyncio.run(run())
    return 0
