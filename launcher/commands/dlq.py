"""`chorus dlq list|show|replay`: the dead-letter topic, read to its end, and chosen records sent back."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka.errors import KafkaError

from launcher.commands.common import CommandError, Commands, group, known_tenant, service_pool, table, when
from launcher.settings import Endpoints
from shared import dead_letters, tenants
from shared.dead_letters import DeadLetterEntry, headers_of, parse_id
from shared.kafka import create_producer
from shared.topics import DLQ

# A replayed record says where it came from; the agents ignore headers they do not know.
REPLAY_HEADER = "chorus-replay-of"
_AGO = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def register(commands: Commands) -> None:
    dlq = group(commands, "dlq", "list, show and replay the records on the dead-letter topic")

    listing = dlq.add_parser("list", help="one line per dead letter, oldest first")
    _filters(listing)
    listing.set_defaults(run=_list)

    show = dlq.add_parser("show", help="a dead letter's whole reason and its original record")
    show.add_argument("id", help="partition:offset, as `chorus dlq list` prints it")
    show.set_defaults(run=_show)

    replay = dlq.add_parser("replay", help="send dead letters' original records back to their topic")
    replay.add_argument("ids", nargs="*", metavar="ID", help="partition:offset; without ids, the filters choose")
    _filters(replay)
    replay.add_argument("--dry-run", action="store_true", help="say what would be sent, send nothing")
    replay.set_defaults(run=_replay)


def _filters(parser: argparse.ArgumentParser) -> None:
    moment = "an ISO time (2026-11-30T10:00Z) or an age (30m, 2h, 7d)"
    parser.add_argument("--since", type=_moment, help=f"dead-lettered at or after: {moment}")
    parser.add_argument("--until", type=_moment, help=f"dead-lettered before: {moment}")
    parser.add_argument("--topic", help="the original topic, with or without the topic prefix")
    parser.add_argument("--reason", help="a part of the reason or the error class (any case)")
    parser.add_argument("--tenant", help="the tenant (name or id) the original record names")


def _moment(text: str) -> datetime:
    ago = _AGO.match(text.strip())
    if ago:
        return datetime.now(UTC) - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an ISO time nor an age like 30m, 2h or 7d") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _Chosen:
    """What the filters ask for; `tenants` holds the names and id the tenant goes by."""

    since: datetime | None
    until: datetime | None
    topic: str | None
    reason: str | None
    tenants: frozenset[str] | None

    def __call__(self, entry: DeadLetterEntry) -> bool:
        letter = entry.letter
        if letter is None:
            return not (self.topic or self.reason or self.tenants)
        if (self.since and letter.failed_at < self.since) or (self.until and letter.failed_at >= self.until):
            return False
        if self.topic and not (letter.topic == self.topic or letter.topic.endswith(f".{self.topic}")):
            return False
        if self.reason and self.reason.lower() not in f"{letter.error_class} {letter.reason}".lower():
            return False
        return self.tenants is None or entry.tenant in self.tenants


def _chosen(args: argparse.Namespace, endpoints: Endpoints) -> _Chosen:
    names = None
    if args.tenant:
        names = frozenset(asyncio.run(_tenant_names(endpoints, args.tenant)))
    return _Chosen(args.since, args.until, args.topic, args.reason, names)


async def _tenant_names(endpoints: Endpoints, name_or_id: str) -> set[str]:
    async with service_pool(endpoints) as pool:
        tenant_id = await known_tenant(pool, name_or_id)
        named = {tenant.name for tenant in await tenants.list_tenants(pool) if tenant.id == tenant_id}
    return {str(tenant_id), *named}


Keep = Callable[[DeadLetterEntry], bool]


def _read(endpoints: Endpoints, keep: Keep, since: datetime | None) -> list[DeadLetterEntry]:
    topic = DLQ.full_name(endpoints.common.topic_prefix)

    async def run() -> list[DeadLetterEntry]:
        # Kafka's record times are the dead letters' own, give or take the clocks: a minute's
        # margin before `since`, and the exact time is checked on each letter.
        start = since - timedelta(minutes=1) if since else None
        return [entry async for entry in dead_letters.read_dead_letters(endpoints.kafka_bootstrap, topic, start)
                if keep(entry)]  # fmt: skip

    try:
        return asyncio.run(run())
    except LookupError as error:
        raise CommandError(f"{error}; `chorus topics` creates it") from None
    except (OSError, KafkaError) as error:
        raise CommandError(f"cannot reach Kafka at {endpoints.kafka_bootstrap} ({error})") from None


def _list(args: argparse.Namespace) -> int:
    endpoints = Endpoints.from_environment()
    chosen = sorted(_read(endpoints, _chosen(args, endpoints), args.since), key=_failed_at)
    headers = ["id", "failed", "topic", "service", "error", "size", "tenant", "reason"]
    print(table(headers, [_row(entry, endpoints.common.topic_prefix) for entry in chosen]))
    return 0


def _failed_at(entry: DeadLetterEntry) -> tuple[datetime, int, int]:
    return (entry.letter.failed_at if entry.letter else entry.timestamp, entry.partition, entry.offset)


def _row(entry: DeadLetterEntry, prefix: str) -> list[str]:
    letter = entry.letter
    if letter is None:
        return [entry.id, when(entry.timestamp), "?", "?", "not a dead letter", "-", "-", "-"]
    size = letter.value_size if letter.value_size is not None else len(letter.value)
    reason = " ".join(letter.reason.split())
    return [
        entry.id, when(letter.failed_at), letter.topic.removeprefix(prefix), letter.service, letter.error_class,
        f"{size}{' (cut)' if letter.value_truncated else ''}", entry.tenant or "-",
        reason if len(reason) <= 80 else reason[:79] + "…",
    ]  # fmt: skip


def _show(args: argparse.Namespace) -> int:
    try:
        place = parse_id(args.id)
    except ValueError as error:
        raise CommandError(str(error)) from None
    endpoints = Endpoints.from_environment()
    found = _read(endpoints, lambda entry: (entry.partition, entry.offset) == place, None)
    if not found:
        raise CommandError(f"no dead letter {args.id}; `chorus dlq list` shows them")
    entry = found[0]
    letter = entry.letter
    if letter is None:
        raise CommandError(f"{args.id} on the dead-letter topic is not a dead letter")
    size = letter.value_size if letter.value_size is not None else len(letter.value)
    fields = [
        ("id", entry.id),
        ("failed", when(letter.failed_at)),
        ("from", f"{letter.topic}[{letter.partition}]@{letter.offset}"),
        ("service", letter.service),
        ("tenant", entry.tenant or "-"),
        ("error", letter.error_class),
        ("key", _text(_key(letter.key_b64))),
        ("size", f"{size} bytes, sha256 {letter.value_sha256 or '-'}"
                 + (f"; only the first {len(letter.value)} bytes were kept" if letter.value_truncated else "")),
        ("headers", ", ".join(f"{name}={_text(value)}" for name, value in headers_of(letter)) or "-"),
    ]  # fmt: skip
    for name, value in fields:
        print(f"{name + ':':9}{value}")
    print(f"reason:\n{letter.reason}\nrecord:\n{_readable(letter.value)}")
    return 0


def _key(key_b64: str | None) -> bytes | None:
    return None if key_b64 is None else base64.b64decode(key_b64)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return "-"
    if isinstance(data, str):
        return data
    try:
        return data.decode()
    except UnicodeDecodeError:
        return f"(not UTF-8, {len(data)} bytes) {data[:64].hex()}"


def _readable(value: bytes) -> str:
    """JSON indented, text as it is, other bytes as hex."""
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return f"(not UTF-8; {len(value)} bytes, hex)\n{value.hex()}"
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _replay(args: argparse.Namespace) -> int:
    endpoints = Endpoints.from_environment()
    filters = _chosen(args, endpoints)
    if args.ids:
        try:
            places = {parse_id(text) for text in args.ids}
        except ValueError as error:
            raise CommandError(str(error)) from None
        chosen = _read(endpoints, lambda entry: (entry.partition, entry.offset) in places and filters(entry), None)
        missing = places - {(entry.partition, entry.offset) for entry in chosen}
        if missing:
            listed = ", ".join(f"{partition}:{offset}" for partition, offset in sorted(missing))
            raise CommandError(f"no dead letter {listed} (or the filters leave it out); nothing was sent")
    elif any(value is not None for value in (args.since, args.until, args.topic, args.reason, args.tenant)):
        chosen = _read(endpoints, filters, args.since)
    else:
        raise CommandError("name the dead letters to replay (partition:offset) or choose them with filters")
    sent, skipped = asyncio.run(_send(endpoints, chosen, args.dry_run))
    verb = "would send" if args.dry_run else "sent"
    print(f"{verb} {sent}, skipped {skipped}")
    return 0 if skipped == 0 else 1


async def _send(endpoints: Endpoints, chosen: list[DeadLetterEntry], dry_run: bool) -> tuple[int, int]:
    producer = None if dry_run else create_producer(endpoints.kafka_bootstrap)
    if producer is not None:
        await producer.start()
    sent = skipped = 0
    try:
        for entry in chosen:
            letter = entry.letter
            if letter is None or letter.value_truncated:
                why = "not a dead letter" if letter is None else "only a cut of the record was kept"
                print(f"skipped {entry.id}: {why}")
                skipped += 1
                continue
            headers = [*headers_of(letter), (REPLAY_HEADER, entry.id.encode())]
            if producer is not None:
                await producer.send_and_wait(letter.topic, letter.value, key=_key(letter.key_b64), headers=headers)
            print(f"{'would send' if dry_run else 'sent'} {entry.id} to {letter.topic} ({len(letter.value)} bytes)")
            sent += 1
    finally:
        if producer is not None:
            await producer.stop()
    return sent, skipped
