"""Benchmarks: each prints a Markdown table and writes its figures to .chorus/bench/<name>.json."""
