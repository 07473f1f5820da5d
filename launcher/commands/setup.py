"""`chorus migrate`, `topics` and `settings`: they need only a Postgres, a Kafka or nothing, never the stack."""

from __future__ import annotations

import argparse
import asyncio

import asyncpg
from aiokafka.errors import KafkaError

from launcher.commands.common import CommandError, Commands, postgres_problem
from launcher.settings import SERVICE_SETTINGS, Endpoints, StackSettings
from launcher.topics import ALL_TOPICS
from shared.embedding.settings import EmbeddingSettings
from shared.kafka import TopicConfig, ensure_topics
from shared.migrate import migrate
from shared.settings import CommonSettings, describe


def register(commands: Commands) -> None:
    migrate_command = commands.add_parser("migrate", help="apply the database migrations")
    migrate_command.set_defaults(run=_migrate)
    topics = commands.add_parser("topics", help="create the Kafka topics that are missing")
    topics.set_defaults(run=_topics)
    settings = commands.add_parser("settings", help="print every setting with its default, as a Markdown table")
    settings.set_defaults(run=_settings)


def _migrate(args: argparse.Namespace) -> int:
    endpoints = Endpoints.from_environment()
    admin_url = endpoints.admin_database_url
    try:
        applied = asyncio.run(
            migrate(admin_url, endpoints.database_url, embedding_dim=endpoints.settings.embedding_dim)
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        variable = "CHORUS_ADMIN_DATABASE_URL" if endpoints.settings.admin_database_url else None
        raise postgres_problem(admin_url, error, variable) from None
    print(f"applied migrations {applied}" if applied else "the database is up to date")
    return 0


def _topics(args: argparse.Namespace) -> int:
    endpoints = Endpoints.from_environment()
    common = endpoints.common
    bootstrap = endpoints.kafka_bootstrap
    try:
        names = asyncio.run(ensure_topics(bootstrap, ALL_TOPICS, common.topic_prefix, TopicConfig.of(common)))
    except (KafkaError, OSError, TimeoutError) as error:
        fix = "check CHORUS_KAFKA_BOOTSTRAP" if endpoints.external_kafka else "start it with `make up`"
        raise CommandError(f"cannot create the topics on Kafka at {bootstrap} ({error}); {fix}") from None
    print("\n".join(names))
    return 0


def _settings(args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def settings_table() -> str:
    """Every setting of every service and of the `chorus` command, as the README's Markdown table."""
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
