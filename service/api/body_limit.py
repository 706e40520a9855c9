"""LRP_MAX_BODY_BYTES (LRP_MAX_MODEL_BYTES for a model upload), enforced as the body streams in (chunked bodies
included), before anything parses it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(Exception):
    """Raised into the app from `receive` once the streamed body passes the limit."""


Limit = tuple[int, str]  # the most bytes a body may have, and the setting that says so


class BodyLimitMiddleware:
    """Answer 413 (`too_large(scope, limit)`) for a body over the `limit_for(scope)` bytes: at once when Content-Length
    declares more, else as soon as the chunks read so far pass it; the rest is never read, and the app's answer to a
    cut-off body is replaced by the 413."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], Limit],
                 too_large: Callable[[Scope, Limit], JSONResponse]) -> None:
        self.app = app
        self.limit_for = limit_for
        self.too_large = too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.limit_for(scope)
        limit = rule[0]
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self.too_large(scope, rule)(scope, receive, send)
            return
        received, exceeded, started = 0, False, False

        async def counted() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLargeError(f"the body passed {limit} bytes")
            return message

        async def unless_exceeded(message: Message) -> None:
            nonlocal started
            if exceeded:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(BodyTooLargeError):  # the app did not catch it: the 413 below answers
            await self.app(scope, counted, unless_exceeded)
        if exceeded and not started:
            await self.too_large(scope, rule)(scope, receive, send)
