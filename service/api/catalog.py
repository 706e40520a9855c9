"""Bodies of the routes that describe rather than compute: the models (`GET /models`, `/models/{model}`, a PUT's
answer), health, and the error body every route shares; each with an example that works as-is."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas import WALKTHROUGH_INPUT
from service.manifest.model_json import ComparedComposite


class LayerRule(BaseModel):
    """A layer, its operation and the LRP rule it gets under the default composite."""

    name: str
    node: str
    op: str
    rule: str


class ModelSummary(BaseModel):
    """A registered model: what it takes, what it predicts and how it is explained by default."""

    name: str
    description: str
    input: dict[str, Any]
    classes: list[str]
    task: str = Field(default="classification", description="classification, multi_label, regression, "
                      "token_classification or question_answering")
    output_activation: str
    default_composite: str | dict[str, Any]
    default_params: dict[str, Any]
    metrics: dict[str, Any]
    composites: list[str]

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "walkthrough", "description": "The 3-3-1 network of the LRP walkthrough",
        "input": {"kind": "tensor", "shape": [3], "example": WALKTHROUGH_INPUT}, "classes": ["positive"],
        "output_activation": "sigmoid", "default_composite": "epsilon", "default_params": {"epsilon": 0.0},
        "metrics": {}, "composites": ["epsilon_plus_flat", "epsilon"]}]})


class ServingSettings(BaseModel):
    """The limits in force for one model: its model.json `batching` values over the service's LRP_* ones."""

    max_batch_size: int = Field(description="most inputs in one batched pass")
    max_batch_tokens: int = Field(description="a text model's most token positions in one pass (texts x the longest)")
    max_delay_ms: float = Field(description="how long the first queued input waits for others")
    max_queue: int = Field(description="queued inputs before requests get 503")
    timeout_s: float = Field(description="a request still queued after this long gets 504")
    cpu_threads: int = Field(description="torch threads per pass")


class ModelDetail(ModelSummary):
    """A model with the rule each of its layers gets under the default composite, its serving limits, its version
    and when it was loaded."""

    layers: list[LayerRule]
    serving: ServingSettings
    version: str = Field(description="sha256 (hex) of the model's files: model.json, weights and tokenizer")
    faithfulness: dict[str, dict[str, float]] | None = Field(
        default=None, description="measured at load on model.json's held-out examples: mean AOPC (MoRF, LeRF, random "
        "orders) of the default composite, the input x gradient and random relevance")
    composite_comparison: list[ComparedComposite] = Field(
        default=[], description="model.json's evaluation.comparison: the composites (with their parameters) measured "
        "on the same examples when the default was chosen, best AOPC MoRF first")
    loaded_at: str = Field(description="when this version was loaded (ISO 8601, UTC)")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "walkthrough", "description": "The 3-3-1 network of the LRP walkthrough",
        "input": {"kind": "tensor", "shape": [3], "example": WALKTHROUGH_INPUT}, "classes": ["positive"],
        "output_activation": "sigmoid", "default_composite": "epsilon", "default_params": {"epsilon": 0.0},
        "metrics": {}, "composites": ["epsilon_plus_flat", "epsilon"],
        "layers": [{"name": "0", "node": "_0", "op": "linear", "rule": "epsilon"},
                   {"name": "1", "node": "_1", "op": "activation", "rule": "pass"},
                   {"name": "2", "node": "_2", "op": "linear", "rule": "epsilon"}],
        "serving": {"max_batch_size": 32, "max_batch_tokens": 16384, "max_delay_ms": 5.0, "max_queue": 1024,
                    "timeout_s": 30.0, "cpu_threads": 1},
        "version": "4e1f3c0c6b1e9d7a2f8b5c3d9e0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2",
        "loaded_at": "2026-12-01T12:00:00+00:00"}]})


class ErrorDetail(BaseModel):
    """A stable error code and a message that says how to fix the request."""

    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error answer has this shape."""

    error: ErrorDetail

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "error": {"code": "model_not_found", "message": "no model named 'x'; available models are ['digits']"}}]})


class Health(BaseModel):
    """Liveness/readiness: the loaded models and those refused at start-up with the reason."""

    status: str
    models: list[str] = []
    failed: dict[str, str] = {}

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ready", "models": ["digits"],
                                                               "failed": {}}]})
