"""The inbox page and /docs as files: served by the services themselves, nothing from elsewhere (no broker needed)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.ingest.app import create_app as create_ingest_app
from services.ingest.settings import IngestSettings
from services.search.app import create_app as create_search_app
from services.search.routes.inbox import PAGE_FOLDER
from services.search.settings import SearchSettings
from shared.settings import load


@pytest.fixture(scope="module")
def search() -> Iterator[TestClient]:
    # Not entered as a context manager: the lifespan, which connects to Postgres and Kafka, never runs.
    yield TestClient(create_search_app(load(SearchSettings, {})))


@pytest.fixture(scope="module")
def ingest() -> Iterator[TestClient]:
    yield TestClient(create_ingest_app(load(IngestSettings, {})))


def test_the_inbox_page_allows_only_its_own_scripts_styles_and_requests(search: TestClient) -> None:
    page = search.get("/inbox")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/inbox/inbox.js"' in page.text and "<script>" not in page.text
    assert " style=" not in page.text


@pytest.mark.parametrize(
    ("asset", "media_type"),
    [("inbox.js", "text/javascript"), ("inbox.css", "text/css"), ("favicon.svg", "image/svg+xml")],
)
def test_each_asset_comes_from_the_service_with_its_type(search: TestClient, asset: str, media_type: str) -> None:
    answer = search.get(f"/inbox/{asset}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(media_type)
    assert answer.content == (PAGE_FOLDER / asset).read_bytes()
    assert "content-security-policy" in answer.headers


@pytest.mark.parametrize("asset", ["index.html", "../routes/inbox.py", "nope.js", "..%2fapp.py"])
def test_nothing_else_is_served_as_an_asset(search: TestClient, asset: str) -> None:
    assert search.get(f"/inbox/{asset}").status_code == 404


def test_the_page_loads_nothing_from_another_host_and_writes_no_markup_from_data() -> None:
    for path in PAGE_FOLDER.iterdir():
        text = path.read_text()
        # The only absolute URL: the SVG's XML namespace, which is a name and never fetched.
        assert re.findall(r"https?://[^\s\"')]+", text) in ([], ["http://www.w3.org/2000/svg"]), path.name
    script = (PAGE_FOLDER / "inbox.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script.replace("(never innerHTML)", ""), sink


def test_the_api_key_never_travels_in_a_url() -> None:
    script = (PAGE_FOLDER / "inbox.js").read_text()
    assert "sessionStorage.setItem(KEY_STORE" in script and "localStorage" not in script
    assert re.search(r"api_key|apiKey=|[?&]key=", script.replace('"chorus.inbox.apiKey"', "")) is None
    # Without a `name`, a field is never part of a submitted form, not even if the script failed to load.
    page = (PAGE_FOLDER / "index.html").read_text()
    assert re.search(r"<(input|textarea)[^>]*\bname=", page) is None


@pytest.mark.parametrize("service", ["search", "ingest"])
def test_docs_load_swagger_ui_from_the_service(service: str, request: pytest.FixtureRequest) -> None:
    client: TestClient = request.getfixturevalue(service)
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text
    assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', docs.text)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets)
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200 and len(answer.content) > 100, asset
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    assert client.get("/docs/assets/index.html").status_code == 404
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")
