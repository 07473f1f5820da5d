"""Exactly once under SIGKILL, restarts and provider faults (`make test` runs 2,000 events; `make
test-chaos` 20,000). Each run sends the same events, in the same order, to a second tenant with
nothing disturbed, and its clusters must come out the same. Under kills and restarts, poison
records of each kind go straight onto the raw topics too: each is dead-lettered with its reason,
and nothing else is."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from launcher.stack.local import LocalStack
from launcher.stack.processes import free_port
from shared.hashing import MAX_DOCUMENT_CHARS
from tests.chaos.harness import (
    Chaos,
    Sender,
    Stored,
    create_tenant,
    dead_letters,
    make_events,
    settled,
    stack_environment,
    summary,
)
from tests.chaos.poison import Poisoner, cut_documents, make_poison, unexplained
from tests.fake_openai import FakeOpenAI

PORTS = ("postgres", "kafka", "kafka_controller", "search", "ingest", "embed", "cluster")
EVENTS = int(os.environ.get("CHORUS_CHAOS_EVENTS", "2000"))


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _stack(tmp_path: Path, **settings: str) -> LocalStack:
    return LocalStack({**stack_environment(tmp_path / "home", {name: free_port() for name in PORTS}), **settings})


def _run(
    stack: LocalStack,
    count: int,
    disturb: Callable[[Sender, threading.Thread], list[tuple[str, object]]],
    *,
    poisoned: bool = False,
) -> None:
    """Stream `count` events while `disturb` runs (and, `poisoned`, poison records go straight onto
    the raw topics), then check the end state against a clean run."""
    try:
        stack.up()
        chaotic = asyncio.run(create_tenant(stack, "chaos"))
        clean = asyncio.run(create_tenant(stack, "clean"))
        events, expected = make_events(count, seed=20261122)
        ingest = f"http://127.0.0.1:{stack.service_port('ingest')}"
        sender = Sender(ingest, chaotic)
        sending = threading.Thread(target=sender.send_all, args=(events,))
        prefix = stack.common.topic_prefix
        poisoner = Poisoner(stack.kafka_bootstrap, prefix, make_poison(chaotic.id) if poisoned else [])
        poisoning = threading.Thread(target=poisoner.run, args=(sender, count, sending))
        started = time.monotonic()
        sending.start()
        poisoning.start()
        disturbances = disturb(sender, sending)
        sending.join()
        poisoning.join()
        sent_seconds = time.monotonic() - started
        found = asyncio.run(settled(stack, chaotic.id, expected, within=600))
        Sender(ingest, clean).send_all(events)
        reference = asyncio.run(settled(stack, clean.id, expected, within=600))
        letters = asyncio.run(dead_letters(stack))
        cut = asyncio.run(cut_documents(stack.database_url, chaotic.id, poisoner.poison))
    finally:
        stack.down()
    lost, duplicated = _lost_and_duplicated(found, expected)
    print("\n" + summary([
        ("events sent (requests, retries included)", f"{count} ({sender.attempts})"),
        ("events accepted", sender.accepted),
        ("stored: messages, raw events, Tavus callbacks, transcript turns",
         f"{len(found.messages)}, {len(found.raw_events)}, {found.tavus_callbacks}, {len(found.transcript_turns)}"),
        ("documents (without a vector)", f"{found.documents} ({found.documents_without_vector})"),
        ("lost", lost), ("duplicated", duplicated), *disturbances,
        ("clusters (this run / clean run)", f"{len(found.clusters)} / {len(reference.clusters)}"),
        ("poison records produced (partition)",
         ", ".join(f"{item.marker} ({partition})" for item, partition in poisoner.sent) or "none"),
        ("dead letters", len(letters)), ("answers 5xx other than 503", len(sender.server_errors)),
        ("sending took", f"{sent_seconds:.1f} s"),
    ]))  # fmt: skip
    assert sender.accepted == count
    assert (lost, duplicated) == (0, 0)
    assert found.tavus_callbacks == expected.tavus_callbacks
    assert found.documents_without_vector == 0
    assert found.clusters == reference.clusters
    assert len(poisoner.sent) == len(poisoner.poison)
    assert unexplained(letters, poisoner.poison, prefix) == []
    assert cut == {item.marker: [MAX_DOCUMENT_CHARS] for item in poisoner.poison if item.reason is None}
    assert sender.server_errors == []


def _lost_and_duplicated(found: Stored, expected: object) -> tuple[int, int]:
    messages, raw, turns = expected.messages, expected.raw_events, expected.transcript_turns  # type: ignore[attr-defined]
    lost = (
        len(messages - set(found.messages))
        + len(raw - set(found.raw_events))
        + len(turns - set(found.transcript_turns))
    )
    duplicated = sum(n - 1 for counts in (found.messages, found.raw_events, found.transcript_turns)
                     for n in counts.values())  # fmt: skip
    return lost, duplicated


def test_every_accepted_event_is_stored_once_through_kills_and_restarts(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    chaos = Chaos(stack, seed=7)

    def disturb(sender: Sender, sending: threading.Thread) -> list[tuple[str, object]]:
        chaos.run(sender, EVENTS, sending)
        assert len(chaos.kills) >= 3 and set(chaos.recoveries) == {"kafka", "postgres"}
        return [("SIGKILLs", ", ".join(chaos.kills)),
                ("restarts, seconds until every service was ready again",
                 ", ".join(f"{part} {seconds:.1f}" for part, seconds in chaos.recoveries.items()))]  # fmt: skip

    _run(stack, EVENTS, disturb, poisoned=True)


def test_a_flapping_provider_delays_the_stream_but_loses_nothing(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    stack = _stack(tmp_path, CHORUS_EMBEDDING_PROVIDER="openai", CHORUS_OPENAI_BASE_URL=fake_openai.base_url,
                   CHORUS_OPENAI_API_KEY="chaos-key", CHORUS_OPENAI_TIMEOUT_SECONDS="1",
                   CHORUS_EMBED_BACKOFF_SECONDS="0.05", CHORUS_EMBED_BACKOFF_CAP_SECONDS="1",
                   CHORUS_EMBED_MAX_ATTEMPTS="1000")  # fmt: skip

    def disturb(sender: Sender, sending: threading.Thread) -> list[tuple[str, object]]:
        # Flip until the sending is over and the provider has failed both ways at least once: on a
        # busy machine embed may reach the provider only after a short stream has been accepted.
        modes = itertools.cycle(["429", "ok", "500", "ok", "hang", "ok"])
        flips = 0
        deadline = time.monotonic() + 300
        while sending.is_alive() or not {429, 500} <= set(fake_openai.answers):
            assert time.monotonic() < deadline, f"the provider answered only {set(fake_openai.answers)}"
            fake_openai.always = next(modes)
            flips += 1
            time.sleep(1.0)
        fake_openai.always = "ok"
        answers = {code: fake_openai.answers.count(code) for code in (200, 429, 500)}
        return [("provider modes flipped", flips), ("provider answers 200/429/500", answers)]

    _run(stack, EVENTS // 2, disturb)
