"""/docs with Swagger UI's files served by the service itself, so the page works offline.

FastAPI's own /docs loads Swagger UI from a CDN and is blank without one; the files come from
the pinned `swagger-ui-bundle-v2` package instead (Swagger UI 5, which reads OpenAPI 3.1).
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
ASSETS_URL = f"{DOCS_URL}/assets"
OAUTH2_REDIRECT_URL = f"{DOCS_URL}/oauth2-redirect"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def serve_docs(app: FastAPI) -> None:
    """Add /docs and its assets to an app made with `docs_url=None` and `redoc_url=None`."""

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} · API",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon-32x32.png",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(f"{ASSETS_URL}/{{asset}}", include_in_schema=False)
    async def docs_asset(asset: str) -> Response:
        media_type = ASSETS.get(asset)
        if media_type is None:
            raise HTTPException(404, f"no docs asset {asset!r}")
        body = (swagger_ui_path / asset).read_bytes()
        # The files change only with the pinned package, so a browser may keep them a day.
        return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
