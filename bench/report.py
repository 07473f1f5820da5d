"""Writing benchmark results: one JSON file per benchmark and a Markdown table on stdout."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from launcher.stack.local import read_env_file
from shared.db import create_pool, tenant_transaction

RESULTS = Path(".chorus") / "bench"
# Where `chorus up` wrote it: CHORUS_HOME, as for the stack itself (a stack on ports of its own).
DEMO_ENV = Path(os.environ.get("CHORUS_HOME", ".chorus")) / "demo.env"


def demo_env() -> dict[str, str]:
    """The URLs and credentials `make up` wrote; benchmarks run against that stack."""
    if not DEMO_ENV.exists():
        raise SystemExit(f"no {DEMO_ENV}: run `make up` first")
    return read_env_file(DEMO_ENV)


async def poll_demo_tenant(
    env: dict[str, str],
    query: str,
    *arguments: Any,
    done: Callable[[list[asyncpg.Record]], bool],
    within: float,
    every: float = 0.25,
) -> list[asyncpg.Record]:
    """Run `query` in the demo tenant every `every` seconds until `done(rows)` or `within`
    seconds passed; returns the last rows. How a benchmark waits for the pipeline to catch up."""
    pool = await create_pool(env["CHORUS_DATABASE_URL"], max_size=1)
    deadline = time.perf_counter() + within
    try:
        while True:
            async with tenant_transaction(pool, env["CHORUS_DEMO_TENANT"]) as db:
                rows: list[asyncpg.Record] = await db.fetch(query, *arguments)
            if done(rows) or time.perf_counter() > deadline:
                return rows
            await asyncio.sleep(every)
    finally:
        await pool.close()


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str = ""

    def row(self) -> str:
        return f"| {self.name} | {self.value:,.2f} {self.unit} | {self.target or '—'} |"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(benchmark: str, figures: list[Figure], details: dict[str, Any]) -> Path:
    """Print the table and write .chorus/bench/<benchmark>.json; returns the file."""
    print(f"\n### {benchmark}\n")
    print("| figure | measured | target |")
    print("| --- | --- | --- |")
    for figure in figures:
        print(figure.row())
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{benchmark}.json"
    path.write_text(
        json.dumps(
            {
                "benchmark": benchmark,
                "measured_at": datetime.now(UTC).isoformat(),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "figures": [figure.__dict__ for figure in figures],
                "details": details,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {path}")
    return path
