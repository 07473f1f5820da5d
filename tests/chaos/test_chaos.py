"""Exactly once under SIGKILL and restarts (2,000 events in `make test`; `make test-chaos` sends 20,000)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from shared.stack.local import LocalStack
from shared.stack.processes import free_port
from tests.chaos.harness import (
    Chaos,
    Sender,
    create_tenant,
    dead_letters,
    make_events,
    settled,
    stack_environment,
    summary,
)

PORTS = ("postgres", "kafka", "kafka_controller", "search", "ingest", "embed", "cluster")


def test_every_accepted_event_is_stored_once_through_kills_and_restarts(tmp_path: Path) -> None:
    count = int(os.environ.get("CHORUS_CHAOS_EVENTS", "2000"))
    stack = LocalStack(stack_environment(tmp_path / "home", {name: free_port() for name in PORTS}))
    try:
        stack.up()
        chaotic = asyncio.run(create_tenant(stack, "chaos"))
        clean = asyncio.run(create_tenant(stack, "clean"))
        events, expected = make_events(count, seed=20261122)
        demo = stack.service_port("ingest")
        sender = Sender(f"http://127.0.0.1:{demo}", chaotic)
        sending = threading.Thread(target=sender.send_all, args=(events,))
        started = time.monotonic()
        sending.start()
        chaos = Chaos(stack, seed=7)
        chaos.run(sender, count, sending)
        sending.join()
        sent_seconds = time.monotonic() - started
        found = asyncio.run(settled(stack, chaotic.id, expected, within=300))

        # The same events in the same order to a second tenant, with nothing killed.
        Sender(f"http://127.0.0.1:{demo}", clean).send_all(events)
        reference = asyncio.run(settled(stack, clean.id, expected, within=300))
        letters = asyncio.run(dead_letters(stack))
    finally:
        stack.down()

    lost = (len(expected.messages - set(found.messages)) + len(expected.raw_events - set(found.raw_events))
            + len(expected.transcript_turns - set(found.transcript_turns)))  # fmt: skip
    duplicated = (sum(n - 1 for n in found.messages.values()) + sum(n - 1 for n in found.raw_events.values())
                  + sum(n - 1 for n in found.transcript_turns.values()))  # fmt: skip
    print("\n" + summary([
        ("events sent (attempts)", f"{count} ({sender.attempts})"),
        ("events accepted", sender.accepted),
        ("stored: messages, raw events, Tavus callbacks, transcript turns",
         f"{len(found.messages)}, {len(found.raw_events)}, {found.tavus_callbacks}, {len(found.transcript_turns)}"),
        ("documents (all with vectors)", f"{found.documents} ({found.documents_without_vector} without)"),
        ("lost", lost),
        ("duplicated", duplicated),
        ("SIGKILLs", ", ".join(chaos.kills)),
        ("restarts with recovery seconds", ", ".join(f"{k} {v:.1f}" for k, v in chaos.recoveries.items())),
        ("clusters (chaos run / clean run)", f"{len(found.clusters)} / {len(reference.clusters)}"),
        ("dead letters", letters),
        ("sending took", f"{sent_seconds:.1f} s"),
    ]))  # fmt: skip
    assert sender.accepted == count
    assert lost == 0 and duplicated == 0
    assert found.tavus_callbacks == expected.tavus_callbacks
    assert found.documents_without_vector == 0
    assert len(chaos.kills) >= 3 and set(chaos.recoveries) == {"kafka", "postgres"}
    assert found.clusters == reference.clusters
    assert letters == 0
