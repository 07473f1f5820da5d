"""Three brokers and two processes of each consumer service through a broker's SIGKILL and restart, a
worker of each service SIGKILLed and one added: every accepted event is stored once and the clusters
equal a clean run's. `make test` streams 300 events; `make test-scale` 10,000."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from launcher.stack.local import LocalStack
from launcher.stack.processes import free_port, running_pid
from shared.kafka import create_producer
from tests.chaos.harness import (
    Event,
    Expected,
    Sender,
    Stored,
    Tenant,
    create_tenant,
    dead_letters,
    make_events,
    settled,
    stack_environment,
    summary,
)
from tests.scale.cluster_state import free_port_block, groups_have, seconds_until, smallest_isr

EVENTS = int(os.environ.get("CHORUS_SCALE_EVENTS", "300"))
CONSUMERS = ("ingest", "embed", "cluster")
KILLED_BROKER = 1
PROBE_TOPIC = "scale-probe"
# The first 80 % of the stream lasts at least this long (a short stream is paced, a long one is not
# slowed), and the rest waits until every disturbance is over: each falls inside the stream.
STREAM_SECONDS = 40.0
HELD_BACK = 0.2


class PacedSender(Sender):
    """The chaos harness's sender, pacing the events over `seconds` and holding the last of them
    back until `disturbed` is set."""

    def __init__(self, ingest_url: str, tenant: Tenant, seconds: float, disturbed: threading.Event) -> None:
        super().__init__(ingest_url, tenant)
        self.seconds = seconds
        self.disturbed = disturbed

    def send_all(self, events: list[Event]) -> None:
        started = time.monotonic()
        paced = int(len(events) * (1 - HELD_BACK))
        try:
            for number, event in enumerate(events):
                if number >= paced:
                    self.disturbed.wait()
                time.sleep(max(started + self.seconds * number / paced - time.monotonic(), 0))
                while not self._send(event):
                    time.sleep(0.2)
                self.accepted += 1
        finally:
            self.client.close()


def _stack(tmp_path: Path) -> LocalStack:
    ports = {name: free_port() for name in ("postgres", "search", "ingest", "embed", "cluster")}
    kafka = free_port_block(6)  # three brokers: CHORUS_KAFKA_PORT + 2n and CHORUS_KAFKA_CONTROLLER_PORT + 2n
    env = stack_environment(tmp_path / "home", {**ports, "kafka": kafka, "kafka_controller": kafka + 1})
    return LocalStack({**env, "CHORUS_KAFKA_BROKERS": "3", "CHORUS_WORKERS": "embed=2,cluster=2,normalizer=2"})


async def _create_probe_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(PROBE_TOPIC, num_partitions=3, replication_factor=3)])
    finally:
        await admin.close()


async def _every_partition_writable(bootstrap: str) -> float:
    """Seconds until a write to each probe partition is acknowledged by all its in-sync replicas:
    the partitions the killed broker led wait for the controller to elect new leaders."""
    started = time.monotonic()
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        await asyncio.gather(*(producer.send_and_wait(PROBE_TOPIC, b"probe", partition=n) for n in range(3)))
    finally:
        await producer.stop()
    return time.monotonic() - started


@dataclass
class Scaling:
    """Broker and worker disturbances at shares of the stream; what each cost, in seconds."""

    stack: LocalStack
    figures: list[tuple[str, object]] = field(default_factory=list)

    def run(self, sender: Sender, total: int, sending: threading.Thread, disturbed: threading.Event) -> None:
        steps: list[tuple[float, Callable[[], None]]] = [
            (0.1, self.kill_broker), (0.25, self.restart_broker), (0.4, self.kill_workers), (0.55, self.add_workers),
        ]  # fmt: skip
        try:
            for share, step in steps:
                while sending.is_alive() and sender.accepted < total * share:
                    time.sleep(0.05)
                step()
                self.figures.append((f"  (events accepted by then: {sender.accepted})", ""))
        finally:
            disturbed.set()

    def kill_broker(self) -> None:
        self.stack.kafka.cluster.kill_node(KILLED_BROKER)
        writable = asyncio.run(_every_partition_writable(self.stack.kafka_bootstrap))
        self.figures.append(("broker SIGKILLed: every partition acknowledges writes again after", f"{writable:.1f} s"))

    def restart_broker(self) -> None:
        started = time.monotonic()
        self.stack.kafka.cluster.start_node(KILLED_BROKER)
        listening = time.monotonic() - started

        async def all_in_sync() -> bool:
            return await smallest_isr(self.stack.kafka_bootstrap) == 3

        in_sync = asyncio.run(seconds_until(all_in_sync, 180, "every replica back in sync"))
        self.figures.append(
            ("broker restarted: listening, then every replica in sync, after", f"{listening:.1f} s, {in_sync:.1f} s")
        )

    def kill_workers(self) -> None:
        for service in CONSUMERS:
            pid = running_pid(self.stack.workers.pid_path(f"{service}-2"))
            assert pid is not None, f"{service}-2 is not running"
            os.killpg(pid, signal.SIGKILL)
        rebalanced = asyncio.run(self._groups_settle(1))
        self.figures.append(("worker SIGKILLed: its partitions reassigned after", rebalanced))

    def add_workers(self) -> None:
        started = time.monotonic()
        names = self.stack.add_workers(*CONSUMERS)
        assert names == [f"{service}-3" for service in CONSUMERS]
        ready = time.monotonic() - started
        joined = asyncio.run(self._groups_settle(2))
        self.figures.append(("workers added: ready (all three) after", f"{ready:.1f} s"))
        self.figures.append(("  then their groups rebalanced after", joined))

    async def _groups_settle(self, members: int) -> str:
        bootstrap = self.stack.kafka_bootstrap

        def settle(service: str) -> Callable[[], Awaitable[bool]]:
            return lambda: groups_have(bootstrap, service, members)

        seconds = await asyncio.gather(
            *(seconds_until(settle(service), 120, f"{service}'s groups of {members}") for service in CONSUMERS)
        )
        return ", ".join(f"{service} {value:.1f} s" for service, value in zip(CONSUMERS, seconds, strict=True))


def _lost_and_duplicated(found: Stored, expected: Expected) -> tuple[int, int]:
    lost = (
        len(expected.messages - set(found.messages))
        + len(expected.raw_events - set(found.raw_events))
        + len(expected.transcript_turns - set(found.transcript_turns))
    )
    counts = (found.messages, found.raw_events, found.transcript_turns)
    return lost, sum(n - 1 for stored in counts for n in stored.values())


def test_three_brokers_and_scaled_consumers_lose_and_duplicate_nothing(tmp_path: Path, process_watchdog: None) -> None:
    # `process_watchdog` ends every broker, service and worker if this pytest is killed: their pid
    # files lie under tmp_path.
    stack = _stack(tmp_path)
    scaling = Scaling(stack)
    started = time.monotonic()
    try:
        stack.up()
        up_seconds = time.monotonic() - started
        assert asyncio.run(smallest_isr(stack.kafka_bootstrap)) == 3
        asyncio.run(_create_probe_topic(stack.kafka_bootstrap))
        scaled, clean = asyncio.run(create_tenant(stack, "scaled")), asyncio.run(create_tenant(stack, "clean"))
        events, expected = make_events(EVENTS, seed=20261130)
        ingest = f"http://127.0.0.1:{stack.service_port('ingest')}"
        disturbed = threading.Event()
        sender = PacedSender(ingest, scaled, STREAM_SECONDS, disturbed)
        sending = threading.Thread(target=sender.send_all, args=(events,), daemon=True)
        sending_started = time.monotonic()
        sending.start()
        scaling.run(sender, EVENTS, sending, disturbed)
        sending.join()
        sent_seconds = time.monotonic() - sending_started
        found = asyncio.run(settled(stack, scaled.id, expected, within=600))
        settle_seconds = time.monotonic() - sending_started - sent_seconds
        clean_started = time.monotonic()
        Sender(ingest, clean).send_all(events)
        reference = asyncio.run(settled(stack, clean.id, expected, within=600))
        clean_seconds = time.monotonic() - clean_started
        letters = asyncio.run(dead_letters(stack))
        running = stack.status()
    finally:
        stopping = time.monotonic()
        stack.down()
        down_seconds = time.monotonic() - stopping
    lost, duplicated = _lost_and_duplicated(found, expected)
    print("\n" + summary([
        ("brokers, processes of ingest/embed/cluster", "3, 2/2/2 (one of each killed, one added: 2/2/2)"),
        ("chorus up (three brokers, seven services)", f"{up_seconds:.1f} s"),
        ("events sent (requests, retries included)", f"{EVENTS} ({sender.attempts})"),
        ("events accepted", sender.accepted),
        *scaling.figures,
        ("stored: messages, raw events, Tavus callbacks, transcript turns",
         f"{len(found.messages)}, {len(found.raw_events)}, {found.tavus_callbacks}, {len(found.transcript_turns)}"),
        ("documents (without a vector)", f"{found.documents} ({found.documents_without_vector})"),
        ("lost", lost), ("duplicated", duplicated),
        ("clusters (this run / clean run)", f"{len(found.clusters)} / {len(reference.clusters)}"),
        ("dead letters", len(letters)), ("answers 5xx other than 503", len(sender.server_errors)),
        ("sending took, then settling", f"{sent_seconds:.1f} s, {settle_seconds:.1f} s"),
        ("clean run (sending and settling), chorus down", f"{clean_seconds:.1f} s, {down_seconds:.1f} s"),
    ]))  # fmt: skip
    assert sender.accepted == EVENTS
    assert (lost, duplicated) == (0, 0)
    assert found.tavus_callbacks == expected.tavus_callbacks
    assert found.documents_without_vector == 0
    assert found.clusters == reference.clusters
    assert letters == []
    assert sender.server_errors == []
    assert {name for name, up in running.items() if not up} == {f"{service}-2" for service in CONSUMERS}
