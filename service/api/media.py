"""The media types a route takes, checked before its body is parsed: 415 naming them for any other Content-Type."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import params
from fastapi.requests import Request
from fastapi.responses import Response

from service.api.fast_json import FastJSONRoute
from service.errors import UnsupportedMediaTypeError

JSON = "application/json"
MULTIPART = "multipart/form-data"


class MediaTypeRoute(FastJSONRoute):
    """A route whose body must come as JSON, or as multipart/form-data when it takes form fields or files."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes = self.takes()
        if takes is None:
            return handler

        async def check_media_type(request: Request) -> Response:
            given = request.headers.get("content-type", "")
            media = given.split(";", 1)[0].strip().lower()
            if media != takes and not (takes == JSON and media.startswith("application/") and media.endswith("+json")):
                raise UnsupportedMediaTypeError(
                    f"{request.method} {request.url.path} takes {takes}, not {given or 'a body without Content-Type'}"
                    f"; send Content-Type: {takes}")
            return await handler(request)

        return check_media_type

    def takes(self) -> str | None:
        """The media type of this route's body, or None when it takes no body."""
        fields = self.dependant.body_params
        if not fields:
            return None
        return MULTIPART if any(isinstance(f.field_info, params.Form) for f in fields) else JSON
