"""The `chorus` command: the one entry point for people, scripts and the Makefile."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

from launcher.stack.local import SERVICE_SETTINGS, LocalStack, StackSettings
from launcher.stack.processes import StackError
from shared import tenants
from shared.db import create_pool
from shared.embedding.settings import EmbeddingSettings
from shared.kafka import ensure_topics
from shared.migrate import MigrationError, migrate
from shared.settings import CommonSettings, SettingsError, describe, load


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
        return result
    except (StackError, SettingsError, MigrationError) as error:
        print(f"chorus: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of our output went away (`chorus up | head -1`): nothing left to say.
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    up = commands.add_parser("up", help="start Postgres, Kafka and the four services in the background")
    up.set_defaults(run=_up)
    down = commands.add_parser("down", help="stop everything `chorus up` started")
    down.set_defaults(run=_down)
    status = commands.add_parser("status", help="which parts of the embedded stack are running")
    status.set_defaults(run=_status)
    migrate_command = commands.add_parser("migrate", help="apply the database migrations")
    migrate_command.set_defaults(run=_migrate)
    topics = commands.add_parser("topics", help="create the Kafka topics that are missing")
    topics.set_defaults(run=_topics)

    tenant_commands = commands.add_parser("tenants", help="manage tenants").add_subparsers(title="tenant commands")
    add = tenant_commands.add_parser("add", help="create a tenant and print its id")
    add.add_argument("name")
    add.set_defaults(run=_tenants_add)

    key_commands = commands.add_parser("keys", help="manage API keys").add_subparsers(title="key commands")
    create = key_commands.add_parser("create", help="print a new API key for a tenant, alone on the last line")
    create.add_argument("tenant", help="the tenant's name or id")
    create.add_argument("--name", default="", help="a label for the key")
    create.set_defaults(run=_keys_create)

    publish = commands.add_parser("publish", help="send a JSONL file of events to chorus.raw.events (backfills)")
    publish.add_argument("file", type=Path)
    publish.add_argument("--source", help="set this source on every event")
    publish.add_argument("--tenant", help="set this tenant (name or id) on every event")
    publish.set_defaults(run=_publish)

    reembed = commands.add_parser("reembed", help="re-embed existing documents with another model (resumable)")
    reembed.add_argument("--model", required=True, help="the model every document should end with")
    reembed.add_argument("--tenant", help="only this tenant (name or id); all tenants without it")
    reembed.set_defaults(run=_reembed)

    settings = commands.add_parser("settings", help="print every setting with its default, as a Markdown table")
    settings.set_defaults(run=_settings)
    return parser


def _up(args: argparse.Namespace) -> int:
    stack = LocalStack()
    values = stack.up()
    seconds = values.pop("CHORUS_UP_SECONDS")
    demo_records = values.pop("CHORUS_DEMO_RECORDS", "0")
    print(f"Chorus is up ({seconds}s); {demo_records} demo records sent through ingest.")
    print(f"  search   {values['CHORUS_SEARCH_URL']}   (API docs: {values['CHORUS_SEARCH_URL']}/docs)")
    print(f"  ingest   {values['CHORUS_INGEST_URL']}")
    for service in ("embed", "cluster"):
        print(f"  {service:<8} http://127.0.0.1:{stack.service_port(service)}/metrics")
    print(f"  kafka    {values['CHORUS_KAFKA_BOOTSTRAP']}")
    if "CHORUS_PROMETHEUS_URL" in values:
        print(f"  prometheus {values['CHORUS_PROMETHEUS_URL']}   (alerts: deploy/prometheus/alerts.yml)")
    print(f"  logs     {stack.home / 'logs'}")
    print(f"  env      {stack.home / 'demo.env'}")
    print(f"Demo tenant {values['CHORUS_DEMO_TENANT']}, API key:")
    print(values["CHORUS_DEMO_API_KEY"])
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = LocalStack().down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = LocalStack().status()
    for part, running in status.items():
        print(f"{part:<9} {'running' if running else 'stopped'}")
    return 0 if all(status.values()) else 3


def _migrate(args: argparse.Namespace) -> int:
    stack = LocalStack()
    applied = asyncio.run(
        migrate(stack.admin_database_url, stack.database_url, embedding_dim=stack.settings.embedding_dim)
    )
    print(f"applied migrations {applied}" if applied else "the database is up to date")
    return 0


def _topics(args: argparse.Namespace) -> int:
    stack = LocalStack()
    prefix = stack.environ.get("CHORUS_TOPIC_PREFIX", "")
    names = asyncio.run(ensure_topics(stack.kafka_bootstrap, prefix, stack.settings.topic_partitions))
    print("\n".join(names))
    return 0


def _tenants_add(args: argparse.Namespace) -> int:
    async def run() -> UUID:
        pool = await create_pool(LocalStack().database_url, max_size=1)
        try:
            return await tenants.create_tenant(pool, args.name)
        finally:
            await pool.close()

    print(asyncio.run(run()))
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    async def run() -> str | None:
        pool = await create_pool(LocalStack().database_url, max_size=1)
        try:
            tenant_id = await tenants.resolve_tenant(pool, args.tenant)
            if tenant_id is None:
                return None
            return await tenants.create_api_key(pool, tenant_id, args.name)
        finally:
            await pool.close()

    key = asyncio.run(run())
    if key is None:
        print(
            f"chorus: no tenant named {args.tenant!r}; create it with `chorus tenants add NAME`",
            file=sys.stderr,
        )
        return 1
    print("Store this key now: Chorus keeps only its hash.", file=sys.stderr)
    print(key)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from services.ingest.publish import publish_lines

    if not args.file.is_file():
        print(f"chorus: {args.file} is not a file", file=sys.stderr)
        return 1
    stack = LocalStack()
    summary = asyncio.run(
        publish_lines(
            args.file.read_bytes().splitlines(),
            stack.kafka_bootstrap,
            topic_prefix=stack.environ.get("CHORUS_TOPIC_PREFIX", ""),
            source=args.source,
            tenant=args.tenant,
        )
    )
    for problem in summary.problems:
        print(problem, file=sys.stderr)
    print(f"sent {summary.sent}, failed {summary.failed}")
    return 0 if summary.failed == 0 else 1


def _reembed(args: argparse.Namespace) -> int:
    from services.embed.reembed import reembed
    from shared.embedding import create_provider
    from shared.embedding.local import MODEL_NAME

    stack = LocalStack()
    settings = load(EmbeddingSettings, stack.environ)
    if settings.embedding_provider == "local":
        variants = {MODEL_NAME: "fp32", f"{MODEL_NAME}-int8": "int8"}
        if args.model not in variants:
            print(f"chorus: the local provider has the models {', '.join(variants)}", file=sys.stderr)
            return 1
        settings = dataclasses.replace(settings, local_model_variant=variants[args.model])
    elif settings.embedding_provider == "openai":
        settings = dataclasses.replace(settings, openai_model=args.model)
    provider = create_provider(settings)
    if provider.model != args.model:
        print(f"chorus: the {settings.embedding_provider} provider makes {provider.model!r}", file=sys.stderr)
        return 1

    async def run() -> int:
        pool = await create_pool(stack.database_url, max_size=2)
        try:
            if args.tenant:
                tenant_id = await tenants.resolve_tenant(pool, args.tenant)
                if tenant_id is None:
                    print(f"chorus: no tenant named {args.tenant!r}", file=sys.stderr)
                    return 1
                tenant_ids = [tenant_id]
            else:
                tenant_ids = await tenants.all_tenant_ids(pool)
            position = stack.home / "reembed" / f"{args.model}.json"
            summary = await reembed(pool, provider, tenant_ids, position)
            print(f"re-embedded {summary.embedded} documents of {summary.tenants} tenants in {summary.seconds:.1f}s")
            return 0
        finally:
            await provider.close()
            await pool.close()

    return asyncio.run(run())


def _settings(args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def settings_table() -> str:
    """Every setting of every service and of the embedded stack, as the README's Markdown table."""
    rows: dict[str, tuple[str, str, str]] = {}
    groups: list[tuple[str, type]] = [
        ("all services", CommonSettings),
        ("`chorus` command", StackSettings),
        ("embed, search", EmbeddingSettings),
    ]
    groups += [(f"{name}", cls) for name, cls in SERVICE_SETTINGS.items()]
    for used_by, cls in groups:
        for env, default, doc, _secret in describe(cls):
            rows.setdefault(env, (used_by, default, doc))
    lines = ["| setting | used by | default | meaning |", "| --- | --- | --- | --- |"]
    for env, (used_by, default, doc) in rows.items():
        lines.append(
            f"| `{env}` | {used_by} | `{default}` | {doc} |" if default else f"| `{env}` | {used_by} | | {doc} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
