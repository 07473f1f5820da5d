"""The count of a tenant's recent dead letters: its window, its names and its bound; no broker needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.search import dead_letters
from services.search.dead_letters import RecentDeadLetters


def test_only_the_last_hour_of_the_tenant_under_any_of_its_names_counts() -> None:
    recent = RecentDeadLetters()
    now = datetime.now(UTC)
    recent.add("acme", now)
    recent.add("0b0e", now - timedelta(minutes=30))
    recent.add("acme", now - timedelta(minutes=61))
    recent.add("beta", now)
    assert recent.count(["acme", "0b0e"]) is None, "not caught up yet: no count rather than a low one"
    recent.caught_up = True
    assert recent.count(["acme", "0b0e"]) == 2
    assert recent.count(["acme", "acme"]) == 1
    assert recent.count(["nobody"]) == 0
    recent.reset()
    assert recent.count(["acme"]) is None


def test_tenants_past_the_bound_are_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dead_letters, "MAX_TENANTS", 3)
    recent = RecentDeadLetters()
    recent.caught_up = True
    for number in range(5):
        recent.add(f"made-up-{number}", datetime.now(UTC))
    assert [recent.count([f"made-up-{number}"]) for number in range(5)] == [1, 1, 1, 0, 0]
