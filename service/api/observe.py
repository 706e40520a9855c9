"""ASGI middleware that counts and times every /predict, /explain and /v2 infer request for the metrics, by model and
verb ("infer" for the Open Inference Protocol)."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.serving.metrics import ServiceMetrics

VERBS = ("predict", "explain", "infer")
UNKNOWN_MODEL = "(unknown)"  # one label for every unregistered name, so typos cannot grow the label set


class RequestMetricsMiddleware:
    """Observe status and latency of the model endpoints; other paths pass through untouched."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, is_model: Callable[[str], bool]) -> None:
        self.app = app
        self.metrics = metrics
        self.is_model = is_model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises past every handler

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route, params = scope.get("route"), scope.get("path_params", {})
        template = getattr(route, "path", "")  # "/explain/{model}", "/predict/{model}/image", ...
        verb = template.split("/")[1] if template.startswith("/") else ""
        if template.startswith("/v2/models/") and template.endswith("/infer"):  # the model's or a version's
            verb = "infer"
        if verb not in VERBS:
            return
        model = str(params.get("model", ""))
        self.metrics.observe_request(model if self.is_model(model) else UNKNOWN_MODEL, verb, status, seconds)
