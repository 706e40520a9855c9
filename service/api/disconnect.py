"""Wait for a result unless the HTTP client goes away first; then the work is cancelled (and dropped if queued)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

from service.errors import ClientDisconnectedError

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    """Return once the server reports `http.disconnect` (call only after the body has been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        continue


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """The result of `work`; if the client disconnects first, cancel `work` and raise ClientDisconnectedError."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if not task.done() or task.cancelled():
        raise ClientDisconnectedError(f"the client disconnected from {request.method} {request.url.path} "
                                      "before its answer was ready; the request was dropped")
    return task.result()
