"""Writing benchmark results: one JSON file per benchmark and a Markdown table on stdout."""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.stack.local import read_env_file

RESULTS = Path(".chorus") / "bench"
DEMO_ENV = Path(".chorus") / "demo.env"


def demo_env() -> dict[str, str]:
    """The URLs and credentials `make up` wrote; benchmarks run against that stack."""
    if not DEMO_ENV.exists():
        raise SystemExit("no .chorus/demo.env: run `make up` first")
    return read_env_file(DEMO_ENV)


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
