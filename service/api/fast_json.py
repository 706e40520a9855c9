"""JSON through orjson both ways: request bodies parse about 3x faster, answers render about 30x faster."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.requests import Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute


class FastJSONResponse(JSONResponse):
    """A JSONResponse whose numpy arrays are written directly as nested lists; float32 values get the shortest
    digits that read back to the same float32 (so a relevance map is exact at half the text of float64 repr)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def parse_json(body: bytes) -> Any:
    """The body as parsed by orjson; a body orjson refuses goes to the standard parser, which accepts NaN and
    Infinity (refused later by a message that names them) and reports malformed JSON as FastAPI expects, bytes that
    are not UTF-8 included. What only the standard parser cannot take either (nesting past orjson's 1,024 levels, an
    integer of thousands of digits) is malformed JSON with orjson's reason."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as refused:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as problem:
            raise json.JSONDecodeError(f"byte 0x{body[problem.start]:02x} is not UTF-8; JSON is sent as UTF-8",
                                       body.decode("utf-8", "replace"), problem.start) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError):
            raise json.JSONDecodeError(refused.msg, refused.doc, refused.pos) from None


class FastJSONRequest(Request):
    """A Request whose `json()` uses `parse_json`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class FastJSONRoute(APIRoute):
    """An APIRoute whose handler reads its JSON body through FastJSONRequest (FastAPI's documented hook)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parse_with_orjson(request: Request) -> Response:
            return await handler(FastJSONRequest(request.scope, request.receive))

        return parse_with_orjson
