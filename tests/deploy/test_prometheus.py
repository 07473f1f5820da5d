"""A real Prometheus (Debian's package) scrapes `chorus up` while demo data flows; every expression of
the Grafana dashboard and the alert rules is evaluated through its HTTP API."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.webhooks import direct_message, webhook_headers
from launcher.stack.local import read_env_file
from launcher.stack.prometheus import prometheus_binary
from shared import topics
from shared.kafka import create_producer
from tests.conftest import REPO_ROOT
from tests.stack import run_chorus

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "chorus.json"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel.get("targets", [])]


def alert_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def _query(prometheus: str, expression: str) -> dict[str, Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=10)
    body: dict[str, Any] = response.json()
    return body


def _traffic(demo: dict[str, str]) -> None:
    """New fan messages and events, searches in every mode, and one record no agent can read (a dead letter)."""
    now = datetime.now(UTC)
    with httpx.Client(base_url=demo["CHORUS_INGEST_URL"], timeout=30) as client:
        for number in range(6):
            body = json.dumps(direct_message("creator-jay", f"fan-p{number}", f"prometheus-{number}",
                                             f"what time is the stream tonight? ({number})", now)).encode()  # fmt: skip
            headers = webhook_headers(body, demo["CHORUS_STREAMCHAT_API_KEY"], demo["CHORUS_STREAMCHAT_API_SECRET"],
                                      f"prometheus-{number}")  # fmt: skip
            client.post("/webhooks/streamchat", content=body, headers=headers).raise_for_status()
        events = [{"source": "slack", "event_type": "message", "external_id": f"prometheus-{number}",
                   "text": f"deploy {number} of bookings-api finished"} for number in range(6)]  # fmt: skip
        client.post("/v1/events", json=events, headers={"Authorization": f"Bearer {demo['CHORUS_DEMO_API_KEY']}"})
    _search_every_mode(demo)

    async def poison() -> None:
        producer = create_producer(demo["CHORUS_KAFKA_BOOTSTRAP"])
        await producer.start()
        try:
            await producer.send_and_wait(topics.RAW_EVENTS.full_name(), b"not json", key=b"test:poison")
        finally:
            await producer.stop()

    asyncio.run(poison())


def _search_every_mode(demo: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {demo['CHORUS_DEMO_API_KEY']}"}
    with httpx.Client(base_url=demo["CHORUS_SEARCH_URL"], headers=headers, timeout=30) as client:
        for mode in ("hybrid", "semantic", "keyword"):
            client.get("/v1/search", params={"q": f"stream tonight {time.time()}", "mode": mode}).raise_for_status()


def test_every_dashboard_query_returns_series_and_every_alert_parses(stack_env: dict[str, str]) -> None:
    if prometheus_binary() is None:
        pytest.fail("the prometheus command is missing: `make test` installs Debian's prometheus package")
    home = Path(stack_env["CHORUS_HOME"])
    try:
        up = run_chorus("up", env=stack_env)
        assert up.returncode == 0, up.stderr
        demo = read_env_file(home / "demo.env")
        prometheus = demo["CHORUS_PROMETHEUS_URL"]
        # Traffic after Prometheus's first scrape of every service, so that rates and quantiles have data.
        _wait_for(lambda: len(_query(prometheus, 'up{job="chorus"} == 1')["data"]["result"]) == 4, "first scrapes")
        _traffic(demo)

        queries = dashboard_queries()
        assert len({title for title, _ in queries}) >= 15
        deadline = time.monotonic() + 120
        empty: list[str] = []
        while time.monotonic() < deadline:
            empty = [f"{title}: {expr}" for title, expr in queries if not _query(prometheus, expr)["data"]["result"]]
            if not empty:
                break
            time.sleep(5)
        assert not empty, "dashboard queries without a series:\n" + "\n".join(empty)
        freshness = (
            'histogram_quantile(0.99, sum by (le) (rate(chorus_freshness_seconds_bucket{source="streamchat"}[5m])))'
        )
        _wait_for(lambda: _finite(_query(prometheus, freshness)), "a freshness p99 of the new messages")

        for name, expression in alert_expressions():
            answer = _query(prometheus, expression)
            assert answer["status"] == "success", (name, answer)
        rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert {rule["name"] for group in rules for rule in group["rules"]} == {n for n, _ in alert_expressions()}
        assert all(rule["health"] == "ok" for group in rules for rule in group["rules"])
        time.sleep(6)  # one more scrape, for the values printed below
        _print_panel_values(prometheus, queries)
    finally:
        run_chorus("down", env=stack_env)


def _finite(answer: dict[str, Any]) -> bool:
    return any(math.isfinite(float(result["value"][1])) for result in answer["data"]["result"])


def _wait_for(check: Callable[[], bool], what: str, within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"no {what} within {within:.0f} s"
        time.sleep(1)


def _print_panel_values(prometheus: str, queries: list[tuple[str, str]]) -> None:
    """What each panel showed (run with -s to read it)."""
    for title, expression in queries:
        values = [
            f"{','.join(f'{k}={v}' for k, v in sorted(r['metric'].items()) if k not in ('job', 'instance'))}"
            f"={float(r['value'][1]):.3g}"
            for r in _query(prometheus, expression)["data"]["result"]
        ]
        print(f"PANEL {title} | {expression} | {'; '.join(values[:6])}")
