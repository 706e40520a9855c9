"""The FastAPI application: routes, error handlers, the OpenAPI document and model loading at start-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service import __version__, inference
from service.api import admin, health
from service.api.catalog import ErrorDetail, ErrorResponse
from service.api.docs import install_docs
from service.api.observe import RequestMetricsMiddleware
from service.api.openapi import service_openapi
from service.api.rest import routes as rest
from service.api.v2 import routes as v2
from service.errors import ServiceError, describe_validation_errors
from service.loader import Registry
from service.runtime.state import ServiceState
from service.settings import Settings, load_settings

log = logging.getLogger("service")

DESCRIPTION = """Layer-wise Relevance Propagation for registered PyTorch models.

`POST /predict/{model}` classifies, `POST /explain/{model}` says why: relevance maps as JSON, or a PNG
heatmap with `Accept: image/png`. Image models also take uploads at `/predict/{model}/image` and
`/explain/{model}/image`. Errors are `{"error": {"code", "message"}}`."""


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error body of the service's own routes, `catalog.ErrorResponse` (/v2 answers in its protocol's form:
    service.api.v2.route)."""
    body = ErrorResponse(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error answers `{"error": {"code", "message"}}`; unexpected ones are logged and give a bare 500."""

    async def service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return error_response(exc.status, exc.code, exc.message, exc.headers or None)

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        malformed = next((e for e in exc.errors() if e.get("type") == "json_invalid"), None)
        if malformed is not None:  # bytes that are not JSON at all
            where = malformed.get("loc", ("body", 0))[-1]
            reason = malformed.get("ctx", {}).get("error", "not JSON")
            return error_response(400, "malformed_json", f"the body is not valid JSON ({reason} at character "
                                  f"{where}); send a JSON object such as {{\"inputs\": [...]}}")
        message = describe_validation_errors(exc.errors(), whole="body", skip="body", limit=5)
        return error_response(422, "invalid_request", message)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed",
                413: "payload_too_large"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /docs"
        elif exc.status_code == 400:  # FastAPI could not parse the body at all (a broken multipart body)
            message = (f"the body of {request.method} {request.url.path} could not be parsed as "
                       f"{request.headers.get('content-type', '(no Content-Type)').split(';')[0]}; send a well-formed "
                       "multipart/form-data body with the image in the field \"file\"")
        return error_response(exc.status_code, code, message, dict(exc.headers or {}))

    async def server_fault(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal", "internal server error; the details are in the server log")

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, server_fault)


class ServiceApp(FastAPI):
    """The service's FastAPI app: its OpenAPI document is built on each call, so that it lists the models loaded by
    then (service.api.openapi)."""

    def openapi(self) -> dict[str, Any]:
        return service_openapi(self, self.state.service.registry)


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> ServiceApp:
    """The app; models load in a worker thread at start-up unless a ready `registry` is given."""
    state = ServiceState(settings or load_settings(), inference.run_batch, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        loading = None if state.registry is not None else loop.run_in_executor(state.device_thread, state.load)
        yield
        if loading is not None and not loading.done():
            loading.cancel()
        state.close()

    app = ServiceApp(title="LRP explanation service", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                     docs_url=None, redoc_url=None)
    app.state.service = state
    app.include_router(health.router)
    app.include_router(rest.router)
    app.include_router(v2.router)
    if state.settings.admin_token is not None:
        app.include_router(admin.router)
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics,
                       is_model=lambda name: state.registry is not None and name in state.registry)
    install_docs(app)
    install_error_handlers(app)
    return app
