"""Swagger UI at /docs and ReDoc at /redoc, served from files installed with the service (the fastapi-offline wheel),
so that both work on machines without internet access; a Content-Security-Policy keeps the pages on this server."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSET_URL = "/docs/assets"
FAVICON = f"{ASSET_URL}/favicon.png"
# Scripts and styles from this server (Swagger UI starts from an inline script); images also as data: URLs and as
# blob: URLs (Swagger UI shows a PNG answer that way); ReDoc runs a worker from a blob: URL. Anything else, the
# logo ReDoc's bundle would fetch from its CDN included, is blocked before it leaves the browser.
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
               "frame-ancestors 'none'")


def _on_this_server(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    return page


def install_docs(app: FastAPI) -> None:
    """GET /docs (Swagger UI), /redoc (ReDoc) and /favicon.ico, with every asset from this server."""
    app.mount(ASSET_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    async def swagger_ui() -> HTMLResponse:
        return _on_this_server(get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSET_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSET_URL}/swagger-ui.css",
            swagger_favicon_url=FAVICON))

    async def redoc() -> HTMLResponse:
        return _on_this_server(get_redoc_html(
            openapi_url="/openapi.json", title=f"{app.title} - ReDoc", redoc_js_url=f"{ASSET_URL}/redoc.standalone.js",
            redoc_favicon_url=FAVICON, with_google_fonts=False))

    async def favicon() -> FileResponse:
        return FileResponse(ASSETS / "favicon.png", media_type="image/png")

    app.add_api_route("/docs", swagger_ui, include_in_schema=False)
    app.add_api_route("/redoc", redoc, include_in_schema=False)
    app.add_api_route("/favicon.ico", favicon, include_in_schema=False)
