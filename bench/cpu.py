"""CPU seconds used by the stack's processes and this benchmark, read from /proc (Linux only).

Tells where a run's CPU went, by part. A process that ends during the run (a Postgres backend
whose pooled connection closed) takes its seconds with it, so the figures are a lower bound.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

# The first of these found in a process's command line names its part.
PARTS = (
    ("services.ingest", "ingest"),
    ("services.embed", "embed"),
    ("services.cluster", "cluster"),
    ("services.search", "search"),
    ("postgres", "postgres"),
    ("kafka", "kafka"),
)


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """(part, user plus system CPU seconds so far) by process id; this process is "benchmark client"."""
    proc = Path("/proc")
    if not proc.is_dir():
        return {}
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            # Fields after the command name in parentheses; utime and stime are the 14th and 15th.
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended while being read
        part = "benchmark client" if int(entry.name) == os.getpid() else _part(command)
        if part is not None:
            found[int(entry.name)] = (part, (int(fields[11]) + int(fields[12])) / ticks)
    return found


def used_since(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds by part since `before` was read, counting the processes alive now."""
    used: dict[str, float] = defaultdict(float)
    for pid, (part, seconds) in cpu_seconds().items():
        used[part] += seconds - before.get(pid, (part, 0.0))[1]
    return dict(used)


def _part(command: str) -> str | None:
    return next((part for marker, part in PARTS if marker in command), None)


def machine_busy(seconds: float = 1.0) -> float:
    """The share of all the machine's CPU time spent busy over the next `seconds` (0 to 1)."""
    first = _cpu_times()
    time.sleep(seconds)
    second = _cpu_times()
    total = sum(second) - sum(first)
    idle = (second[3] + second[4]) - (first[3] + first[4])  # idle and iowait
    return 1.0 - idle / total if total > 0 else 0.0


def settle(most_busy: float = 0.15, quiet_seconds: int = 5, within: float = 240.0) -> float:
    """Wait until the machine has been at most `most_busy` busy for `quiet_seconds` seconds in a row, so
    a latency figure does not measure what an earlier benchmark left running (segment builds and
    merges, which come every few seconds, vacuum, a backlog); returns the seconds waited. After
    `within` seconds it goes on and says so."""
    started = time.monotonic()
    quiet = 0
    while quiet < quiet_seconds:
        busy = machine_busy()
        quiet = quiet + 1 if busy <= most_busy else 0
        if quiet < quiet_seconds and time.monotonic() - started > within:
            print(f"the machine was {busy:.0%} busy {within:.0f} s on; measuring anyway", flush=True)
            break
    waited = time.monotonic() - started
    print(f"waited {waited:.0f} s for the machine to settle", flush=True)
    return waited


def _cpu_times() -> list[int]:
    """The machine's CPU time in ticks by kind (user, nice, system, idle, iowait, ...), from /proc/stat."""
    with open("/proc/stat") as stat:
        return [int(value) for value in stat.readline().split()[1:]]
