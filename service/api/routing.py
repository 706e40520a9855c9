"""The route classes the routers are composed of: each route carries its own body limit (counted as the body
streams in, chunked bodies included, before anything parses it), and the REST routes their media-type check and
orjson parsing. A router picks its class; nothing looks at the request path to decide."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

from fastapi.requests import Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.types import Message

from service.api.media import MediaTypeRoute
from service.settings import Settings

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class BodyLimit(NamedTuple):
    """The most bytes a body may have, the setting that says so, and what a client with a larger one can do."""

    limit: int
    setting: str
    hint: str


class BodyTooLargeError(HTTPException):
    """A body past its route's limit: raised from `receive` as it streams in (an HTTPException, so that FastAPI's
    body parsing passes it on instead of calling the body malformed)."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class ServiceRoute(MediaTypeRoute):
    """A route of the service: its body may have at most LRP_MAX_BODY_BYTES, refused (413) at once when
    Content-Length declares more, else as soon as the chunks read so far pass it (the rest is never read); then the
    media type is checked (415) and JSON parsed by orjson."""

    @staticmethod
    def body_limit(settings: Settings) -> BodyLimit:
        """The most bytes this route's body may have."""
        return BodyLimit(settings.max_body_bytes, "LRP_MAX_BODY_BYTES",
                         "send fewer instances per request, or images as PNG/JPEG uploads")

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            limit, setting, hint = self.body_limit(request.app.state.service.settings)
            message = f"the request body exceeds {limit} bytes ({setting}); {hint}"
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise BodyTooLargeError(message)
            received = 0

            async def counted() -> Message:
                nonlocal received
                message_in = await request.receive()
                if message_in["type"] == "http.request":
                    received += len(message_in.get("body", b""))
                    if received > limit:
                        raise BodyTooLargeError(message)
                return message_in

            return await handler(Request(request.scope, counted))

        return limited


class ModelUploadRoute(ServiceRoute):
    """PUT /models/{name}: a model's files in one body, up to LRP_MAX_MODEL_BYTES."""

    @staticmethod
    def body_limit(settings: Settings) -> BodyLimit:
        return BodyLimit(settings.max_model_bytes, "LRP_MAX_MODEL_BYTES", "a model's files together must fit in it")
