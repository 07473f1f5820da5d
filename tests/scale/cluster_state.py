"""What Kafka says about a scaled stack: replicas in sync, consumer groups' members; and recovery clocks."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from launcher.stack.processes import port_is_free

# The consumer groups of each service (shared/topics.py names the topics; the agents name these).
GROUPS = {
    "ingest": ("chorus-ingest-streamchat", "chorus-ingest-tavus", "chorus-ingest-events"),
    "embed": ("chorus-embed",),
    "cluster": ("chorus-cluster",),
}


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free ports (the brokers take CHORUS_KAFKA_PORT + 2n, and so on),
    below the kernel's ephemeral range: a port there may be any outgoing connection's before a broker binds it."""
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    lowest = int(ephemeral.read_text().split()[0]) if ephemeral.exists() else 32768
    for _ in range(100):
        first = random.randrange(10_000, lowest - size)
        if all(port_is_free(first + offset) for offset in range(size)):
            return first
    raise RuntimeError(f"no {size} consecutive free ports on 127.0.0.1 between 10000 and {lowest}")


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    return admin


async def smallest_isr(bootstrap: str) -> int:
    """The fewest in-sync replicas of any partition of Chorus's topics and the group offsets."""
    admin = await _admin(bootstrap)
    try:
        names = [name for name in await admin.list_topics() if name.startswith(("chorus.", "__consumer_offsets"))]
        described = await admin.describe_topics(names)
        return min(len(partition["isr"]) for topic in described for partition in topic["partitions"])
    finally:
        await admin.close()


async def group_members(bootstrap: str, groups: tuple[str, ...]) -> dict[str, int]:
    """Members of each group once it is Stable; -1 while a group rebalances."""
    admin = await _admin(bootstrap)
    try:
        found: dict[str, int] = {}
        # One group a request: aiokafka 0.14 fails to decode an answer about several groups with members.
        for group_id in groups:
            for response in await admin.describe_consumer_groups([group_id]):
                described: Any = response.to_object()
                for group in described["groups"]:
                    found[group["group"]] = len(group["members"]) if group["state"] == "Stable" else -1
        return found
    finally:
        await admin.close()


async def seconds_until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Seconds until `check()` holds; a failed check (a broker that is away) counts as not yet."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            if await check():
                return time.monotonic() - started
        except Exception:  # the coordinator or a leader may be the broker that is starting
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {within:.0f}s")


async def groups_have(bootstrap: str, service: str, members: int) -> bool:
    counts = await group_members(bootstrap, GROUPS[service])
    return set(counts.values()) == {members} and len(counts) == len(GROUPS[service])
