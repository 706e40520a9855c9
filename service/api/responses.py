"""What the model routes can answer besides 200, for the OpenAPI document, and how an answer becomes a response."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from service.api.fast_json import FastJSONResponse
from service.schemas import ErrorResponse, ExplainResponse, PredictResponse

MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No model of that name"},
    413: {"model": ErrorResponse, "description": "More instances or bytes than the limits allow"},
    422: {"model": ErrorResponse, "description": "Inputs, target, composite or parameters cannot be used"},
    503: {"model": ErrorResponse, "description": "Models are still loading, or the model's queue is full "
          "(retry after the Retry-After seconds)"},
    504: {"model": ErrorResponse, "description": "The request waited in the queue past LRP_REQUEST_TIMEOUT_S"},
}
LOADING: dict[str, Any] = {"model": ErrorResponse, "description": "Models are still loading"}
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "JSON explanations, or a PNG heatmap"}}


def respond(answer: PredictResponse | ExplainResponse | bytes) -> Response:
    """A PNG answer as image/png; a response model as JSON through orjson (`features` only where present)."""
    if isinstance(answer, bytes):
        return Response(answer, media_type="image/png")
    return FastJSONResponse(answer.model_dump(by_alias=True, exclude_none=True))
