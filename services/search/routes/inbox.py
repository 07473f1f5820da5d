"""GET /inbox: the creator's inbox page and its assets, served by the search service itself."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Response

PAGE_FOLDER = Path(__file__).resolve().parents[1] / "inbox"
ASSETS = {
    "inbox.css": "text/css; charset=utf-8",
    "inbox.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

# Everything from the service itself, but the fans' avatars: StreamChat serves those from its
# own hosts, which the page cannot know in advance. Images cannot run code, and the page's
# referrer policy keeps its address from those hosts.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page is small and changes with each release; a stale copy would talk to a newer API.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.api_route("/inbox", methods=["GET", "HEAD"])
async def inbox_page() -> Response:
    return _file("index.html", "text/html; charset=utf-8")


@router.api_route("/inbox/{asset}", methods=["GET", "HEAD"])
async def inbox_asset(asset: str) -> Response:
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise HTTPException(404, f"no inbox asset {asset!r}")
    return _file(asset, media_type)


def _file(name: str, media_type: str) -> Response:
    return Response((PAGE_FOLDER / name).read_bytes(), media_type=media_type, headers=HEADERS)
