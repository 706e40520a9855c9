"""Health, metrics and the model catalogue: GET /health/live, /health/ready, /metrics, /models, /models/{model}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from service.api.catalog import Health, LayerRule, ModelDetail, ModelSummary, ServingSettings
from service.api.deps import Entry, State
from service.api.responses import LOADING, NOT_FOUND
from service.loader import ModelEntry
from service.lrp import COMPOSITE_NAMES
from service.serving.metrics import CONTENT_TYPE

router = APIRouter()


def _summary_fields(entry: ModelEntry) -> dict[str, Any]:
    spec = entry.spec
    return {"name": entry.name, "description": spec.description,
            "input": spec.input.model_dump(mode="json", exclude_none=True), "classes": spec.classes,
            "task": spec.task, "output_activation": spec.output_activation,
            "default_composite": spec.default_composite,
            "default_params": spec.default_params, "metrics": spec.metrics, "composites": list(COMPOSITE_NAMES)}


@router.get("/health/live", response_model=Health, tags=["health"])
async def live() -> Health:
    """The process is up and answering."""
    return Health(status="live")


@router.get("/health/ready", response_model=Health, tags=["health"], responses={503: LOADING})
async def ready(state: State) -> Health:
    """200 once every model is loaded and warmed up (refused models are listed under `failed`); 503 before, and
    again from the moment shutdown begins (SIGTERM) while requests in flight finish."""
    registry = state.check_ready()
    return Health(status="ready", models=registry.names, failed=dict(registry.failures))


PROMETHEUS_TEXT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {}}, "description": f"Prometheus text exposition ({CONTENT_TYPE})"}}


@router.get("/metrics", tags=["health"], response_class=Response, responses=PROMETHEUS_TEXT)
async def metrics(state: State) -> Response:
    """Prometheus metrics: requests and latency per model and verb, batch sizes, queue depth and waits, refusals."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/models", response_model=list[ModelSummary], tags=["models"], responses={503: LOADING})
async def list_models(state: State) -> list[ModelSummary]:
    """Every registered model: input kind and shape, classes, default composite and measured accuracy."""
    registry = state.ready_registry()
    return [ModelSummary(**_summary_fields(entry)) for entry in registry.entries()]


@router.get("/models/{model}", response_model=ModelDetail, tags=["models"],
            responses={404: NOT_FOUND, 503: LOADING})
async def describe_model(entry: Entry) -> ModelDetail:
    """One model, with every layer and the LRP rule it gets under the model's default composite, the batching
    limits and CPU threads in force for it, its version (the sha256 of its files) and when it was loaded."""
    return model_detail(entry)


def model_detail(entry: ModelEntry) -> ModelDetail:
    """The detail document of a model."""
    return ModelDetail(**_summary_fields(entry), layers=[LayerRule(**layer) for layer in entry.layers()],
                       serving=ServingSettings(**vars(entry.serving)), version=entry.version,
                       faithfulness=entry.faithfulness, composite_comparison=(
                           [] if entry.spec.evaluation is None else entry.spec.evaluation.comparison),
                       loaded_at=entry.loaded_at.isoformat(timespec="seconds"))
