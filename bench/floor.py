"""Two servers that do no work, to bound what a one-process Python server reaches on this machine.

`transport`: a bare ASGI app on the same uvicorn stack (uvloop, httptools) that reads the body and answers
`{}`. `framework`: FastAPI with the service's own request schema and JSON parsing (`ExplainRequest`,
`FastJSONRoute`) and nothing after validation. Run by bench/load.py as `uvicorn bench.floor:<name>`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from service.api.fast_json import FastJSONRoute
from service.api.schemas import ExplainRequest

ANSWER = b"{}"


async def transport(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every HTTP request with 200 `{}` once its body has been read."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        continue
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]})
    await send({"type": "http.response.body", "body": ANSWER})


router = APIRouter(route_class=FastJSONRoute)


@router.get("/health/ready")
async def ready() -> dict[str, str]:
    """Always ready."""
    return {"status": "ready"}


@router.post("/explain/{model}")
async def explain(model: str, body: ExplainRequest) -> dict[str, Any]:
    """Validate the body as the service does, then answer at once."""
    return {"model": model, "instances": len(body.inputs)}


framework = FastAPI()
framework.include_router(router)
