"""The OpenAPI document with the registered model names as an enum and one working example per model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from service.api.v2 import routes as v2
from service.loader import ModelEntry, Registry

EXAMPLE_PATHS = {"/predict/{model}": "predict", "/explain/{model}": "explain"}


def example_instance(entry: ModelEntry) -> Any:
    """The model's example instance from model.json, or a neutral one of the right shape."""
    spec = entry.spec.input
    if spec.example is not None:
        return spec.example
    if spec.kind == "tabular" and spec.features:
        means = spec.standardization.mean if spec.standardization else [0.0] * len(spec.features)
        return dict(zip(spec.features, means, strict=True))
    instance: Any = 0.0
    for size in reversed(spec.shape):
        instance = [instance] * size
    return instance


def example_body(entry: ModelEntry, verb: str) -> dict[str, Any]:
    """A request body that works as-is for this model."""
    body: dict[str, Any] = {"inputs": [example_instance(entry)]}
    if verb == "explain":
        body.update({"target": None, "composite": entry.spec.default_composite})
    return body


def service_openapi(app: FastAPI, registry: Registry | None) -> dict[str, Any]:
    """Build the schema on each call, so that it lists the models loaded by now."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    _drop_fastapi_validation_errors(schema)
    add_models(schema, v2.REQUEST_MODELS)
    models = {entry.name: entry for entry in registry.entries()} if registry is not None else {}
    if not models:
        return schema
    names = sorted(models)
    images = [name for name in names if models[name].spec.input.kind == "image"] or names
    for path, item in schema["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "model" and parameter["in"] == "path":
                    parameter["schema"] = {"type": "string", "enum": names, "title": "Model"}
                    parameter["example"] = images[0] if path.endswith("/image") else names[0]
            verb = EXAMPLE_PATHS.get(path)
            if verb is not None:
                content = operation["requestBody"]["content"]["application/json"]
                content["examples"] = {
                    name: {"summary": f"{name}: {models[name].spec.input.kind} input",
                           "value": example_body(models[name], verb)}
                    for name in names}
    return schema


def add_models(schema: dict[str, Any], models: Sequence[type[BaseModel]]) -> None:
    """The JSON schemas of bodies a route reads by hand (documented by a $ref), in the document's components."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found


def _drop_fastapi_validation_errors(schema: dict[str, Any]) -> None:
    """FastAPI documents a 422 with its own body on every route with parameters; this service answers 422 as
    ErrorResponse, documented where a route can give it, so FastAPI's entries and their schemas go."""
    for item in schema["paths"].values():
        for operation in item.values():
            answer = operation.get("responses", {}).get("422", {})
            if answer.get("description") == "Validation Error":
                del operation["responses"]["422"]
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
