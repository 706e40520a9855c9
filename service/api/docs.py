"""Swagger UI served from files installed with the service (the fastapi-offline wheel), so that /docs
works on machines without internet access."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSET_URL = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """GET /docs: Swagger UI whose JavaScript, CSS and icon come from this server."""
    app.mount(ASSET_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSET_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSET_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSET_URL}/favicon.png")

    app.add_api_route("/docs", swagger_ui, include_in_schema=False)
