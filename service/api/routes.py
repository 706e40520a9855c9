"""The HTTP endpoints of the contract; torch work runs in a worker thread, never on the event loop."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from service import inference, inputs, render
from service.api.disconnect import unless_disconnected
from service.api.fast_json import FastJSONResponse, FastJSONRoute
from service.api.schemas import (
    ErrorResponse,
    ExplainRequest,
    ExplainResponse,
    Health,
    LRPParamsBody,
    ModelDetail,
    ModelSummary,
    PredictRequest,
    PredictResponse,
)
from service.batching import DeadlineExceededError, QueueFullError
from service.errors import (
    InvalidInputError,
    OverloadedError,
    PayloadTooLargeError,
    QueueTimeoutError,
    UnsupportedMediaError,
    describe_validation_errors,
)
from service.lrp import COMPOSITE_NAMES
from service.metrics import CONTENT_TYPE
from service.registry import ModelEntry, default_params
from service.state import ServiceState

router = APIRouter(route_class=FastJSONRoute)

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No model of that name"},
    413: {"model": ErrorResponse, "description": "More instances or bytes than the limits allow"},
    422: {"model": ErrorResponse, "description": "Inputs, target, composite or parameters cannot be used"},
    503: {"model": ErrorResponse, "description": "Models are still loading, or the model's queue is full "
          "(retry after the Retry-After seconds)"},
    504: {"model": ErrorResponse, "description": "The request waited in the queue past LRP_REQUEST_TIMEOUT_S"},
}
LOADING: dict[str, Any] = {"model": ErrorResponse, "description": "Models are still loading"}
INLINE_VALUES = 4096  # at most this many input values are converted without a hop to a worker thread
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "JSON explanations, or a PNG heatmap"}}


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def _entry(request: Request, model: str) -> ModelEntry:
    return _state(request).ready_registry().get(model)


def _summary(entry: ModelEntry) -> dict[str, Any]:
    spec = entry.spec
    return {"name": entry.name, "description": spec.description,
            "input": spec.input.model_dump(mode="json", exclude_none=True), "classes": spec.classes,
            "output_activation": spec.output_activation, "default_composite": spec.default_composite,
            "default_params": spec.default_params, "metrics": spec.metrics, "composites": list(COMPOSITE_NAMES)}


def _check_count(request: Request, count: int) -> None:
    limit = _state(request).settings.max_instances
    if count > limit:
        raise PayloadTooLargeError(f"{count} inputs in one request; the limit is {limit} (LRP_MAX_INSTANCES): "
                                   "split the request")


async def _batched(request: Request, entry: ModelEntry, key: tuple[str, ...],
                   samples: list[inference.Sample]) -> list[Any]:
    """Queue the samples in the model's micro-batcher; full queue -> 503 with Retry-After, deadline -> 504,
    client gone -> the samples leave the queue (499, which nobody receives)."""
    batcher = _state(request).batcher(entry)
    try:
        return await unless_disconnected(request, batcher.submit(key, samples))
    except QueueFullError:
        raise OverloadedError(f"model '{entry.name}' has {batcher.queued} inputs queued, its limit "
                              "(LRP_MAX_QUEUE); retry after the Retry-After seconds", {"Retry-After": "1"}) from None
    except DeadlineExceededError:
        raise QueueTimeoutError(f"the request waited more than {batcher.settings.timeout_s:g} s in the queue of "
                                f"model '{entry.name}' and was not run; retry later") from None


async def _predict(request: Request, entry: ModelEntry, x: torch.Tensor) -> JSONResponse:
    samples = [inference.Sample(row, position=i) for i, row in enumerate(x)]
    predictions = await _batched(request, entry, inference.batch_key("predict"), samples)
    return FastJSONResponse(_predict_body(entry, predictions))


async def _tensor(request: Request, entry: ModelEntry, instances: list[Any]) -> torch.Tensor:
    """The model-space batch; small numeric inputs are converted on the event loop (cheaper than a thread hop),
    large ones and base64 images in a worker thread."""
    _check_count(request, len(instances))
    max_pixels = _state(request).settings.max_image_pixels
    spec = entry.spec.input
    if len(instances) * math.prod(spec.shape) <= INLINE_VALUES and not any(isinstance(i, str) for i in instances):
        return inputs.instances_to_tensor(spec, instances, max_pixels)
    return await run_in_threadpool(inputs.instances_to_tensor, spec, instances, max_pixels)


def prefers_png(accept: str | None) -> bool:
    """True when the Accept header ranks image/png above application/json (wildcards do not count)."""
    quality = {"image/png": 0.0, "application/json": 0.0}
    for part in (accept or "").split(","):
        media, *options = (piece.strip() for piece in part.split(";"))
        if media in quality:
            q = next((o[2:] for o in options if o.startswith("q=")), "1")
            try:
                quality[media] = float(q)
            except ValueError:
                continue
    return quality["image/png"] > quality["application/json"]


# -- health and models -------------------------------------------------------------------------------------
@router.get("/health/live", response_model=Health, tags=["health"])
async def live() -> dict[str, Any]:
    """The process is up and answering."""
    return {"status": "live"}


@router.get("/health/ready", response_model=Health, tags=["health"], responses={503: {"model": ErrorResponse}})
async def ready(request: Request) -> dict[str, Any]:
    """200 once every model is loaded and warmed up (refused models are listed under `failed`); 503 before, and
    again from the moment shutdown begins (SIGTERM) while requests in flight finish."""
    registry = _state(request).check_ready()
    return {"status": "ready", "models": sorted(registry.models), "failed": registry.failures}


@router.get("/metrics", tags=["health"], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text exposition"}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests and latency per model and verb, batch sizes, queue depth and waits, refusals."""
    return Response(_state(request).metrics.render(), media_type=CONTENT_TYPE)


@router.get("/models", response_model=list[ModelSummary], tags=["models"], responses={503: LOADING})
async def list_models(request: Request) -> list[dict[str, Any]]:
    """Every registered model: input kind and shape, classes, default composite and measured accuracy."""
    registry = _state(request).ready_registry()
    return [_summary(registry.models[name]) for name in sorted(registry.models)]


@router.get("/models/{model}", response_model=ModelDetail, tags=["models"],
            responses={404: ERRORS[404], 503: LOADING})
async def describe_model(request: Request, model: str) -> dict[str, Any]:
    """One model, with every layer and the LRP rule it gets under the model's default composite, and the
    batching limits and CPU threads in force for it."""
    entry = _entry(request, model)
    state = _state(request)
    serving = {**dataclasses.asdict(state.batch_settings(entry)), "cpu_threads": state.cpu_threads(entry)}
    return {**_summary(entry), "layers": entry.layers(), "serving": serving}


# -- predict -----------------------------------------------------------------------------------------------
def _predict_body(entry: ModelEntry, predictions: list[inference.Prediction]) -> dict[str, Any]:
    return {"model": entry.name, "predictions": [
        {"class": p.index, "label": p.label, "probabilities": p.probabilities, "logits": p.logits}
        for p in predictions]}


@router.post("/predict/{model}", response_model=PredictResponse, tags=["predict"], responses=ERRORS)
async def predict(request: Request, model: str, body: PredictRequest) -> JSONResponse:
    """Class, label, probabilities and logits of each instance."""
    entry = _entry(request, model)
    return await _predict(request, entry, await _tensor(request, entry, body.inputs))


# -- explain -----------------------------------------------------------------------------------------------
def _caption(index: int, result: inference.InstanceExplanation) -> str:
    return f"#{index}: {result.label} (logit {result.logit:.3g})"


def _explain_json(entry: ModelEntry, composite: Any, params: dict[str, Any],
                  results: list[inference.InstanceExplanation], instances: list[Any] | None) -> dict[str, Any]:
    spec = entry.spec.input
    explanations = []
    for i, result in enumerate(results):
        item: dict[str, Any] = {
            "target": result.target, "label": result.label, "logit": result.logit,
            "probability": result.probability, "relevance": result.relevance,
            "relevance_sum": result.relevance_sum, "conservation_delta": result.conservation_delta}
        if spec.kind == "tabular" and spec.features and instances is not None:
            raw = inputs.tabular_values(spec, instances[i], f"inputs[{i}]")
            item["features"] = inference.ranked_features(spec.features, result.relevance, raw.tolist())
        explanations.append(item)
    return {"model": entry.name, "composite": composite, "params": _jsonable(params), "explanations": explanations}


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


async def _explain(request: Request, entry: ModelEntry, x: torch.Tensor, target: Any, composite: Any,
                   params: dict[str, Any], as_png: bool, overlay: bool, bases: list[np.ndarray | None],
                   instances: list[Any] | None = None) -> Response:
    chosen = entry.spec.default_composite if composite is None else composite
    targets = inference.resolve_targets(entry, target, len(x))
    samples = [inference.Sample(row, index, i) for i, (row, index) in enumerate(zip(x, targets, strict=True))]
    results = await _batched(request, entry, inference.batch_key("explain", chosen, params), samples)
    if not as_png:
        return FastJSONResponse(_explain_json(entry, chosen, default_params(entry, chosen, params), results, instances))
    spec = entry.spec.input
    features = spec.features if spec.kind == "tabular" else None
    png = await run_in_threadpool(
        render.explanation_png, [r.relevance for r in results], [_caption(i, r) for i, r in enumerate(results)],
        bases, overlay, features)
    return Response(png, media_type="image/png")


def _display_bases(entry: ModelEntry, x: torch.Tensor, overlay: bool) -> list[np.ndarray | None]:
    if overlay and entry.spec.input.kind == "image":
        return [inputs.display_pixels(entry.spec.input, row) for row in x]
    return [None] * len(x)


@router.post("/explain/{model}", response_model=ExplainResponse, tags=["explain"],
             responses={**ERRORS, **PNG_RESPONSE})
async def explain(request: Request, model: str, body: ExplainRequest) -> Response:
    """LRP relevance of each instance for its target class, as JSON or (Accept: image/png) a PNG heatmap."""
    entry = _entry(request, model)
    x = await _tensor(request, entry, body.inputs)
    as_png = body.format == "png" or prefers_png(request.headers.get("accept"))
    params = body.params.model_dump(exclude_none=True)
    return await _explain(request, entry, x, body.target, body.composite, params, as_png, body.overlay,
                          _display_bases(entry, x, body.overlay and as_png), body.inputs)


# -- image uploads -----------------------------------------------------------------------------------------
async def _upload(request: Request, entry: ModelEntry, file: UploadFile) -> tuple[torch.Tensor, np.ndarray]:
    """The model-space batch of one uploaded image and the image itself as RGB (for overlays)."""
    if entry.spec.input.kind != "image":
        raise UnsupportedMediaError(
            f"model '{entry.name}' takes {entry.spec.input.kind} input, not images; POST JSON "
            f"{{\"inputs\": [...]}} to /predict/{entry.name} or /explain/{entry.name}")
    settings = _state(request).settings
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLargeError(f"the upload exceeds {settings.max_upload_bytes} bytes (LRP_MAX_UPLOAD_BYTES)")

    def decode() -> tuple[torch.Tensor, np.ndarray]:
        image = inputs.decode_image(data, settings.max_image_pixels)
        array = inputs.image_to_array(entry.spec.input, image)
        return torch.from_numpy(array[None].astype(np.float32)), np.asarray(image.convert("RGB"))

    return await run_in_threadpool(decode)


def _form_target(target: str | None) -> int | str | None:
    if target is None or target.strip() in ("", "null"):
        return None
    text = target.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def _form_composite(composite: str | None) -> str | dict[str, Any] | None:
    if composite is None or not composite.strip():
        return None
    text = composite.strip()
    if not text.startswith("{"):
        return text
    try:
        rule_map = json.loads(text)
    except json.JSONDecodeError as problem:
        raise InvalidInputError(f"composite: a rule map must be a JSON object ({problem})") from None
    if not isinstance(rule_map, dict):
        raise InvalidInputError("composite: a rule map must be a JSON object")
    return rule_map


def _form_params(params: str | None) -> dict[str, Any]:
    if params is None or not params.strip():
        return {}
    try:
        return LRPParamsBody.model_validate_json(params).model_dump(exclude_none=True)
    except ValidationError as problem:
        details = describe_validation_errors(problem.errors(), whole="params")
        raise InvalidInputError(f"params must be a JSON object such as {{\"epsilon\": 0.01}}: {details}") from None


@router.post("/predict/{model}/image", response_model=PredictResponse, tags=["predict"], responses=ERRORS)
async def predict_image(request: Request, model: str,
                        file: Annotated[UploadFile, File(description="a PNG or JPEG image of any size")]
                        ) -> JSONResponse:
    """Prediction for an uploaded image, converted to the model's input size and mode."""
    entry = _entry(request, model)
    x, _ = await _upload(request, entry, file)
    return await _predict(request, entry, x)


@router.post("/explain/{model}/image", response_model=ExplainResponse, tags=["explain"],
             responses={**ERRORS, **PNG_RESPONSE})
async def explain_image(
        request: Request, model: str,
        file: Annotated[UploadFile, File(description="a PNG or JPEG image of any size")],
        target: Annotated[str | None, Form(description="class index or label; empty: the predicted class")] = None,
        composite: Annotated[str | None, Form(description="composite name or rule map (JSON)")] = None,
        params: Annotated[str | None, Form(description="LRP parameters as JSON, e.g. {\"epsilon\": 0.01}")] = None,
        overlay: Annotated[bool, Form(description="blend the heatmap over the uploaded image")] = True,
        format: Annotated[Literal["png", "json"], Form(description="png (default) or json")] = "png",
) -> Response:
    """Heatmap of an uploaded image at the image's own size (PNG by default; format=json for numbers)."""
    entry = _entry(request, model)
    x, image = await _upload(request, entry, file)
    return await _explain(request, entry, x, _form_target(target), _form_composite(composite), _form_params(params),
                          format == "png", overlay, [image])
