"""The Open Inference Protocol (KServe V2, REST) routes, over the same pipeline and batcher as /predict and /explain
(service.api.v2.codec). The router composes its own error form (service.api.v2.route) and its OpenAPI entries come
from its pydantic models (service.api.v2.schemas)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from service import __version__
from service.api.deps import Entry, State
from service.api.serve import served
from service.api.v2.codec import INPUT, V2, InferCall, input_shape, predicted_outputs
from service.api.v2.route import V2Route, unknown_route
from service.api.v2.schemas import (
    INFER_ERRORS,
    NOT_FOUND,
    NOT_READY,
    InferRequest,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
    TensorMetadata,
)
from service.api.v2.tensors import HEADER_LENGTH
from service.errors import ModelNotFoundError
from service.loader import ModelEntry

router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=V2Route)
INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": f"#/components/schemas/{InferRequest.__name__}"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "description": (
        f"the JSON request ({HEADER_LENGTH} bytes), then the binary tensors")}}}}}
REQUEST_MODELS = (InferRequest,)  # bodies read by hand (JSON or the binary extension), documented from their model


@router.get("", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    """The server's name, version and protocol extensions."""
    return ServerMetadata(name="lrp-explanation-service", version=__version__,
                          extensions=["binary_tensor_data", "lrp_explanations"])


@router.get("/health/live", response_model=ServerLive)
async def server_live() -> ServerLive:
    """200 while the process answers."""
    return ServerLive(live=True)


@router.get("/health/ready", response_model=ServerReady, responses=NOT_READY)
async def server_ready(state: State) -> ServerReady:
    """200 once every model is loaded, 503 before and from shutdown on."""
    state.check_ready()
    return ServerReady(ready=True)


@router.get("/models/{model}", response_model=ModelMetadata, responses={**NOT_FOUND, **NOT_READY})
async def model_metadata(entry: Entry) -> ModelMetadata:
    """The model's input and outputs with their datatypes and shapes (-1: any size)."""
    spec, classes = entry.spec.input, len(entry.classes)
    text = spec.kind == "text"
    relevance = [-1, -1] if text else [-1, *spec.shape]
    return ModelMetadata(
        name=entry.name, versions=[entry.version], platform="pytorch_lrp",
        inputs=[TensorMetadata(name=INPUT, datatype="BYTES" if text else "FP32", shape=input_shape(entry))],
        outputs=[*(TensorMetadata(name=name, datatype="FP32", shape=[-1, -1, classes] if entry.per_token else
                                  [-1, classes]) for name in predicted_outputs(entry)),
                 *([] if entry.per_token else [TensorMetadata(name="relevance", datatype="FP32", shape=relevance),
                                               TensorMetadata(name="target", datatype="INT64", shape=[-1])])])


@router.get("/models/{model}/ready", response_model=ModelReady, responses={**NOT_FOUND, **NOT_READY})
async def model_ready(entry: Entry) -> ModelReady:
    """200 when the model serves (a model that is not loaded is a 404)."""
    return ModelReady(name=entry.name, ready=True)


async def _versioned(entry: Entry, version: str) -> ModelEntry:
    """The model named by `{model}` at `{version}`: only the version it serves (the sha256 of its files) is held."""
    if version != entry.version:
        raise ModelNotFoundError(f"model '{entry.name}' has no version '{version}'; it serves version "
                                 f"'{entry.version}' (GET /v2/models/{entry.name})")
    return entry


Versioned = Annotated[ModelEntry, Depends(_versioned)]


@router.get("/models/{model}/versions/{version}", response_model=ModelMetadata,
            responses={**NOT_FOUND, **NOT_READY})
async def model_version_metadata(entry: Versioned) -> ModelMetadata:
    """GET /v2/models/{model} for the version it serves; any other version is a 404."""
    return await model_metadata(entry)


@router.get("/models/{model}/versions/{version}/ready", response_model=ModelReady,
            responses={**NOT_FOUND, **NOT_READY})
async def model_version_ready(entry: Versioned) -> ModelReady:
    """200 when the model serves this version; any other version is a 404."""
    return await model_ready(entry)


@router.post("/models/{model}/versions/{version}/infer", responses=INFER_ERRORS, openapi_extra=INFER_BODY)
async def infer_version(request: Request, state: State, entry: Versioned) -> Response:
    """POST /v2/models/{model}/infer on the version it serves; any other version is a 404."""
    return await infer(request, state, entry)


@router.post("/models/{model}/infer", responses=INFER_ERRORS, openapi_extra=INFER_BODY)
async def infer(request: Request, state: State, entry: Entry) -> Response:
    """Predictions (and, with `explain: true`, LRP relevance) for the input tensor's instances."""
    call = InferCall.read(await request.body(), request.headers.get(HEADER_LENGTH), entry)
    return await served(request, state, entry, V2, call)


router.add_api_route("/{path:path}", unknown_route(router.routes), methods=["GET", "HEAD", "POST", "PUT", "PATCH",
                     "DELETE", "OPTIONS"], include_in_schema=False, route_class_override=APIRoute)
