"""How /v2 answers errors: every error of a /v2 route, and every unknown /v2 path or method, is the protocol's
`{"error": "..."}` with the status the REST routes would give. The router's own route class and its last route say
so; no path is looked at elsewhere."""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from fastapi.requests import Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute

from service.api.routing import Handler, ServiceRoute
from service.errors import ServiceError, describe_validation_errors

log = logging.getLogger("service")


def v2_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The protocol's error body."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class V2Route(ServiceRoute):
    """A /v2 route: its errors answer in the protocol's form; a fault is logged and answers a bare 500."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def in_protocol_form(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as problem:
                return v2_error(problem.status, problem.message, problem.headers or None)
            except RequestValidationError as problem:
                return v2_error(400, describe_validation_errors(problem.errors(), whole="request"))
            except HTTPException as problem:
                return v2_error(problem.status_code, str(problem.detail), dict(problem.headers or {}))
            except Exception:
                log.exception("unhandled error in %s %s", request.method, request.url.path)
                return v2_error(500, "internal server error; the details are in the server log")

        return in_protocol_form


def unknown_route(routes: list[BaseRoute]) -> Handler:
    """The handler of the router's last route, which takes every other /v2 path: 405 naming the methods a path
    takes, else 404."""

    async def answer(request: Request) -> Response:
        allowed = sorted({method for route in routes if isinstance(route, V2Route)
                          and route.path_regex.match(request.url.path) for method in route.methods or ()})
        if allowed:
            return v2_error(405, "Method Not Allowed", {"Allow": ", ".join(allowed)})
        return v2_error(404, f"no route {request.method} {request.url.path}; see /docs")

    return answer
