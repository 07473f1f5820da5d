"""`make bench`'s last step: every benchmark's figures in one table and .chorus/bench/results.json."""

from __future__ import annotations

import json
import sys

from bench.report import RESULTS

# In the order `make bench` runs them; the million-document search last, because its first run builds
# its database (about 15 minutes) and leaves the machine busy for a while after.
BENCHMARKS = (
    "ingest", "embed", "cluster", "cluster_throughput", "search", "relevance", "freshness", "hnsw", "vectors",
    "search-1000000",
)  # fmt: skip


def main() -> None:
    results = {}
    print("\n## make bench\n")
    print("| benchmark | figure | measured | target |")
    print("| --- | --- | --- | --- |")
    for name in BENCHMARKS:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            print(f"| {name} | not run | — | — |")
            continue
        result = json.loads(path.read_text())
        results[name] = result
        for figure in result["figures"]:
            measured = f"{figure['value']:,.2f} {figure['unit']}".strip()
            print(f"| {name} | {figure['name']} | {measured} | {figure['target'] or '—'} |")
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {RESULTS / 'results.json'}")
    if len(results) < len(BENCHMARKS):
        sys.exit("some benchmarks did not run")


if __name__ == "__main__":
    main()
