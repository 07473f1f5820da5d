"""The inbox page in a real headless Chromium, over the whole pipeline: three fans ask, the creator answers once.

Ingest (with its reply delivery), embed (the local model), cluster and search run as processes on
the test's Kafka and Postgres; StreamChat is the local stand-in of tests/fake_streamchat.py. The
plain run saves a screenshot (CHORUS_INBOX_SCREENSHOT names where; docs/inbox.png in the README
comes from it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from bench.webhooks import direct_message, webhook_headers
from tests.fake_streamchat import FakeStreamChat
from tests.services.conftest import APP_KEY, APP_SECRET, Tenant, sample
from tests.services.search.pipeline import Pipeline, running_pipeline

pytestmark = pytest.mark.integration

CREATOR = "creator-jay"
FANS = {
    "fan-ana": ("Ana Ruiz", "when does the new hoodie drop? I need one"),
    "fan-kofi": ("Kofi Mensah", "is the hoodie restock happening soon??"),
    "fan-ines": ("Inês Duarte", "when can we buy the new hoodie 🙏"),
}
REPLY = "The hoodie restock drops Friday at 6pm ET, the link will be in my bio. Thank you for waiting!"


def channel(fan: str) -> str:
    return f"messaging:dm-{CREATOR}-{fan}"


@pytest.fixture
def streamchat() -> Iterator[FakeStreamChat]:
    with FakeStreamChat({APP_KEY: APP_SECRET}) as server:
        yield server


@pytest.fixture
def pipeline(
    service_env: dict[str, str], streamchat: FakeStreamChat, tenant: Tenant, tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:  # fmt: skip
    env = {
        **service_env,
        "CHORUS_MODEL_CACHE": str(tmp_path_factory.getbasetemp() / "models"),
        "CHORUS_EMBED_BATCH_WAIT_MS": "10",
        "CHORUS_STREAMCHAT_BASE_URL": streamchat.base_url,
        "CHORUS_REPLY_BACKOFF_SECONDS": "0.05",
        "CHORUS_REPLY_SWEEP_SECONDS": "1",
    }
    with running_pipeline(env, tmp_path / "logs") as running:
        yield running


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's Chromium through its chromedriver (`make system-deps` installs both)."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, "Chromium and its driver are missing: run `make system-deps`"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
        "--force-device-scale-factor=1", "--lang=en-US", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-crash-reporter",
        # Nothing beyond this machine: a fan's avatar host resolves to nothing, and the page shows initials.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def recent(value: Any, shift: timedelta) -> Any:
    """`value` with every created_at/updated_at moved by `shift`, so the demo reads as just now."""
    if isinstance(value, list):
        return [recent(item, shift) for item in value]
    if not isinstance(value, dict):
        return value
    moved = {}
    for key, item in value.items():
        if key in ("created_at", "updated_at", "last_active") and isinstance(item, str):
            stamp = datetime.fromisoformat(item.replace("Z", "+00:00")) + shift
            moved[key] = stamp.isoformat().replace("+00:00", "Z")
        else:
            moved[key] = recent(item, shift)
    return moved


def send_webhooks(pipeline: Pipeline) -> None:
    """The demo's DMs to creator-jay, as if of the last half hour; then the three fans' question."""
    now = datetime.now(UTC)
    demo = sample("streamchat_events")
    shift = now - timedelta(minutes=25) - datetime(2026, 11, 20, 19, 20, tzinfo=UTC)
    bodies = [recent(event, shift) for event in demo]
    for number, (fan, (name, text)) in enumerate(FANS.items()):
        body = direct_message(CREATOR, fan, f"inbox-{fan}", text, now - timedelta(minutes=9 - 3 * number))
        body["message"]["user"]["name"] = body["user"]["name"] = name
        bodies.append(body)
    with httpx.Client(base_url=pipeline.url("ingest"), timeout=10) as client:
        for number, body in enumerate(bodies):
            raw = json.dumps(body).encode()
            headers = webhook_headers(raw, APP_KEY, APP_SECRET, f"inbox-test-{number}")
            response = client.post("/webhooks/streamchat", content=raw, headers=headers)
            assert response.status_code == 200, response.text


def wait_for_cluster_of_three(pipeline: Pipeline, api_key: str, within: float = 120.0) -> dict[str, Any]:
    """The open cluster the three fans' messages formed, once the pipeline made it."""
    texts = {text for _, text in FANS.values()}
    deadline = time.monotonic() + within
    with httpx.Client(base_url=pipeline.url("search"), headers={"Authorization": f"Bearer {api_key}"}) as client:
        while time.monotonic() < deadline:
            answer = client.get("/v1/clusters", params={"creator_id": CREATOR, "status": "open"}).json()
            for cluster in answer["clusters"]:
                if cluster["preview_text"] in texts and (cluster["size"], cluster["channel_count"]) == (3, 3):
                    return dict(cluster)
            time.sleep(0.5)
    raise AssertionError(f"no cluster of the three fans after {within:.0f} s:\n{pipeline.log_tails()}")


@pytest.mark.parametrize("faults", [[], ["429", "429"]], ids=["plain", "rate-limited-twice"])
def test_the_creator_answers_three_fans_from_the_inbox_and_each_channel_gets_it_once(
    pipeline: Pipeline, streamchat: FakeStreamChat, tenant: Tenant, browser: webdriver.Chrome, faults: list[str]
) -> None:
    for fan in FANS:
        streamchat.faults[channel(fan)].extend(faults)
    send_webhooks(pipeline)
    cluster = wait_for_cluster_of_three(pipeline, tenant.api_key)
    wait = WebDriverWait(browser, 60, poll_frequency=0.2)

    # Sign in with the keyboard; the key stays out of the address.
    browser.get(f"{pipeline.url('search')}/inbox")
    wait.until(lambda driver: driver.switch_to.active_element.get_attribute("id") == "api-key")
    browser.switch_to.active_element.send_keys(tenant.api_key, Keys.ENTER)
    row = wait.until(lambda driver: driver.find_element(By.CSS_SELECTOR, f'[data-cluster-id="{cluster["id"]}"]'))
    assert tenant.api_key not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('chorus.inbox.apiKey')") == tenant.api_key
    counts = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "button.cluster .count")]
    assert counts.count("3") == 1, counts
    assert row.find_element(By.CSS_SELECTOR, ".count").text == "3"
    assert "3 messages from 3 channels" in (row.get_attribute("aria-label") or "")

    row.click()
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#messages .message")) == 3)
    names = {element.text for element in browser.find_elements(By.CSS_SELECTOR, "#messages .message-name")}
    assert names == {name for name, _ in FANS.values()}

    # The reply box is labelled; the send button is the next stop of the keyboard after it.
    box = browser.find_element(By.ID, "reply-text")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=reply-text]").text == "Reply to 3 fans at once"
    box.send_keys(REPLY)
    box.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "reply-send"
    browser.switch_to.active_element.send_keys(Keys.ENTER)

    sent = '#delivery-list li[data-status="sent"]'
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, sent)) == 3, "the page never showed 3 sent")
    assert browser.find_element(By.ID, "delivery-summary").text == "Delivered to all 3 channels."
    shown = {item.get_attribute("data-channel-cid") for item in browser.find_elements(By.CSS_SELECTOR, sent)}
    assert shown == {channel(fan) for fan in FANS}
    assert browser.find_element(By.ID, "delivery-text").text == REPLY

    messages = list(streamchat.messages.values())
    assert sorted(message.cid for message in messages) == sorted(channel(fan) for fan in FANS)
    assert {(message.text, message.user_id) for message in messages} == {(REPLY, CREATOR)}
    for fan in FANS:
        assert [post.status for post in streamchat.posts_to(channel(fan))] == [429] * len(faults) + [201]
    assert len(streamchat.posts) == len(FANS) * (len(faults) + 1)
    assert not browser.find_elements(By.CSS_SELECTOR, f'[data-cluster-id="{cluster["id"]}"]')
    assert page_problems(browser) == []

    if not faults:
        # The pointer off the list, where it still hovers over the row that took the answered cluster's place.
        ActionChains(browser).move_to_element(browser.find_element(By.ID, "detail-meta")).perform()
        screenshot = Path(os.environ.get("CHORUS_INBOX_SCREENSHOT") or pipeline.logs.parent / "inbox.png")
        assert browser.save_screenshot(str(screenshot.resolve()))

    browser.find_element(By.ID, "sign-out").click()
    assert browser.find_element(By.ID, "sign-in").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('chorus.inbox.apiKey')") is None

    # The API's docs render as well, from the service's own copy of Swagger UI.
    browser.get(f"{pipeline.url('search')}/docs")
    wait.until(
        lambda driver: (
            "/v1/clusters" in [path.text for path in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")]
        )
    )
    assert page_problems(browser) == []


def page_problems(browser: webdriver.Chrome) -> list[str]:
    """What the browser logged as errors: a script error or a CSP refusal; the avatars' hosts aside."""
    entries: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    return [
        entry["message"] for entry in entries
        if entry["level"] == "SEVERE" and "ERR_NAME_NOT_RESOLVED" not in entry["message"]
    ]  # fmt: skip
