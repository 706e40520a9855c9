"""What the model routes can answer besides 200, for the OpenAPI document, and how an answer becomes a response."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from service.api.catalog import ErrorResponse
from service.api.fast_json import FastJSONResponse
from service.api.rest.drawn import Media
from service.api.schemas import ExplainResponse, PredictResponse

Documented = dict[int | str, dict[str, Any]]


def error(description: str, code: str, message: str) -> dict[str, Any]:
    """An error answer for the OpenAPI document, with an example of its own."""
    return {"model": ErrorResponse, "description": description,
            "content": {"application/json": {"example": {"error": {"code": code, "message": message}}}}}


NOT_FOUND = error("No model of that name", "model_not_found",
                  "no model named 'cat'; available models are ['digits', 'walkthrough'] (GET /models lists them)")
LOADING = error("Models are still loading, or the service is shutting down", "not_ready",
                "the service is still loading its models; retry shortly (GET /health/ready answers 200 when it is "
                "ready)")
JSON_ERRORS: Documented = {
    400: error("The body is not JSON at all", "malformed_json",
               "the body is not valid JSON (Expecting value at character 12); send a JSON object such as "
               "{\"inputs\": [...]}"),
    404: NOT_FOUND,
    413: error("More instances or bytes than the limits allow", "payload_too_large",
               "65 inputs in one request; the limit is 64 (LRP_MAX_INSTANCES): split the request"),
    415: error("The body is not sent as application/json", "unsupported_media_type",
               "POST /explain/digits takes application/json, not text/plain; send Content-Type: application/json"),
    422: error("Inputs, target, composite or parameters cannot be used", "invalid_input",
               "inputs[0]: expected shape [1, 8, 8] or [8, 8], got [3]"),
    500: error("A server fault (the details are in the server log)", "internal",
               "internal server error; the details are in the server log"),
    503: error("Models are still loading, or the model's queue is full (retry after the Retry-After seconds)",
               "overloaded", "model 'digits' has 1024 inputs queued, its limit (LRP_MAX_QUEUE); retry after the "
               "Retry-After seconds"),
    504: error("The request waited in the queue past LRP_REQUEST_TIMEOUT_S", "timeout",
               "the request waited more than 30 s in the queue of model 'digits' and was not run; retry later"),
}
UPLOAD_ERRORS: Documented = {
    **JSON_ERRORS,
    400: error("The body is not a well-formed multipart/form-data body", "malformed_body",
               "the body of POST /explain/digits/image could not be parsed as multipart/form-data; send a "
               "well-formed multipart/form-data body with the image in the field \"file\""),
    413: error("The upload, the body or the image's pixels exceed the limits", "payload_too_large",
               "file: the image has 20000x20000 pixels; the limit is 40000000 pixels (LRP_MAX_IMAGE_PIXELS)"),
    415: error("The body is not sent as multipart/form-data", "unsupported_media_type",
               "POST /explain/digits/image takes multipart/form-data, not application/json; send Content-Type: "
               "multipart/form-data"),
    422: error("The file is not a decodable PNG or JPEG, the model takes no images, or a field cannot be used",
               "invalid_image", "file: could not decode the image; send a PNG or JPEG file"),
}
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}, "text/html": {}},
          "description": "JSON explanations, a PNG heatmap, or (text models) an HTML page of the coloured text"}}


def respond(answer: PredictResponse | ExplainResponse | Media) -> Response:
    """A drawn answer (PNG, HTML) with its media type; a response model as JSON through orjson (`features`, `text`
    only where present)."""
    if isinstance(answer, Media):
        return Response(answer.body, media_type=answer.media_type)
    return FastJSONResponse(answer.model_dump(by_alias=True, exclude_none=True))
