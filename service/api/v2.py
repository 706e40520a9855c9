"""The Open Inference Protocol (KServe V2, REST) over the same pipeline and batcher as /predict and /explain.

Each model has one input, `input` (the instances /predict takes: FP32 [-1, *shape], or BYTES [-1] for a text model)
and the outputs `logits` and `probabilities` (FP32 [-1, classes]). The request parameter `explain: true` adds
`relevance` (FP32 [-1, *shape]; text: [-1, longest], zero past each text's own tokens) and `target` (INT64 [-1]);
`composite`, `target` and `params` (an object, or its JSON text) are those of /explain. Errors answer
`{"error": "..."}` with the status /predict would give.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from service import __version__, inference
from service.api.deps import Entry, State
from service.api.disconnect import unless_disconnected
from service.api.v2_codec import HEADER_LENGTH, Tensor, TensorError, read_inputs, split_body, write_outputs
from service.errors import InvalidInputError, ModelNotFoundError, ServiceError, describe_validation_errors
from service.inference.job import Job
from service.schemas import ExplainResponse, LRPParamsBody, PredictResponse
from service.store.registry import ModelEntry

INPUT = "input"
PREDICTED = ("logits", "probabilities")
EXPLAINED = ("relevance", "target")
router = APIRouter(prefix="/v2", tags=["open inference protocol"])


def _error(description: str, example: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "example": {"error": example}}}}


Documented = dict[int | str, dict[str, Any]]
NOT_FOUND: Documented = {404: _error("No model of that name", "no model named 'cat'; available models are ['digits']")}
NOT_READY: Documented = {503: _error("Still loading, or shutting down",
                                     "the service is still loading its models; retry shortly")}
TENSOR = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
    "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
    "datatype": {"type": "string"}, "parameters": {"type": "object"}, "data": {"type": "array"}}}
INFER_ERRORS: Documented = {
    200: {"description": "The output tensors (JSON, or the JSON header and binary tensors after it)",
          "content": {"application/json": {"schema": {
              "type": "object", "required": ["model_name", "outputs"], "properties": {
                  "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                  "outputs": {"type": "array", "items": TENSOR}}}},
              "application/octet-stream": {}}},
    400: _error("The request breaks the protocol: its JSON, tensors or parameters", "input 'input' must be numbers "
                "of shape [n, 1, 8, 8], got FP32 [3, 64]"),
    **NOT_FOUND,
    413: _error("More instances or bytes than the limits allow", "65 inputs in one request; the limit is 64"),
    415: _error("Not sent as JSON (or the binary extension)", "send Content-Type: application/json"),
    422: _error("Values the model cannot use (range, composite, parameters, targets)", "unknown composite 'x'"),
    500: _error("A server fault (details in the log)", "internal server error; the details are in the server log"),
    **NOT_READY,
    504: _error("Waited in the queue past LRP_REQUEST_TIMEOUT_S", "the request waited more than 30 s in the queue"),
}
INFER_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "parameters": {"type": "object", "description": "explain (bool), composite, "
                                                 "target, params (an object or its JSON text), binary_data_output"},
        "inputs": {"type": "array", "items": TENSOR},
        "outputs": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "parameters": {"type": "object"}}}}}},
    "example": {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 0.8, 0.2]}],
                "parameters": {"explain": True, "composite": "epsilon"}}}}}}


class ProtocolError(ServiceError):
    """A request that breaks the protocol itself (its JSON, its tensors, its parameters)."""

    status = 400
    code = "bad_request"


@router.get("")
async def server_metadata() -> dict[str, Any]:
    """The server's name, version and protocol extensions."""
    return {"name": "lrp-explanation-service", "version": __version__,
            "extensions": ["binary_tensor_data", "lrp_explanations"]}


@router.get("/health/live")
async def server_live() -> dict[str, bool]:
    """200 while the process answers."""
    return {"live": True}


@router.get("/health/ready", responses=NOT_READY)
async def server_ready(state: State) -> dict[str, bool]:
    """200 once every model is loaded, 503 before and from shutdown on."""
    state.check_ready()
    return {"ready": True}


@router.get("/models/{model}", responses={**NOT_FOUND, **NOT_READY})
async def model_metadata(entry: Entry) -> dict[str, Any]:
    """The model's input and outputs with their datatypes and shapes (-1: any size)."""
    spec, classes = entry.spec.input, len(entry.classes)
    text = spec.kind == "text"
    relevance = [-1, -1] if text else [-1, *spec.shape]
    return {"name": entry.name, "versions": [entry.version], "platform": "pytorch_lrp",
            "inputs": [{"name": INPUT, "datatype": "BYTES" if text else "FP32", "shape": [-1] if text else
                        [-1, *spec.shape]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, classes]},
                        {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
                        {"name": "relevance", "datatype": "FP32", "shape": relevance},
                        {"name": "target", "datatype": "INT64", "shape": [-1]}]}


@router.get("/models/{model}/ready", responses={**NOT_FOUND, **NOT_READY})
async def model_ready(entry: Entry) -> dict[str, Any]:
    """200 when the model serves (a model that is not loaded is a 404)."""
    return {"name": entry.name, "ready": True}


async def _versioned(entry: Entry, version: str) -> ModelEntry:
    """The model named by `{model}` at `{version}`: only the version it serves (the sha256 of its files) is held."""
    if version != entry.version:
        raise ModelNotFoundError(f"model '{entry.name}' has no version '{version}'; it serves version "
                                 f"'{entry.version}' (GET /v2/models/{entry.name})")
    return entry


Versioned = Annotated[ModelEntry, Depends(_versioned)]


@router.get("/models/{model}/versions/{version}", responses={**NOT_FOUND, **NOT_READY})
async def model_version_metadata(entry: Versioned) -> dict[str, Any]:
    """GET /v2/models/{model} for the version it serves; any other version is a 404."""
    return await model_metadata(entry)


@router.get("/models/{model}/versions/{version}/ready", responses={**NOT_FOUND, **NOT_READY})
async def model_version_ready(entry: Versioned) -> dict[str, Any]:
    """200 when the model serves this version; any other version is a 404."""
    return await model_ready(entry)


@router.post("/models/{model}/versions/{version}/infer", responses=INFER_ERRORS, openapi_extra=INFER_BODY)
async def infer_version(request: Request, state: State, entry: Versioned) -> Response:
    """POST /v2/models/{model}/infer on the version it serves; any other version is a 404."""
    return await infer(request, state, entry)


@router.post("/models/{model}/infer", responses=INFER_ERRORS, openapi_extra=INFER_BODY)
async def infer(request: Request, state: State, entry: Entry) -> Response:
    """Predictions (and, with `explain: true`, LRP relevance) for the input tensor's instances."""
    document, binary = _document(await request.body(), request.headers.get(HEADER_LENGTH))
    instances = _instances(entry, document, binary)
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("parameters must be an object")
    explaining = parameters.get("explain", False)
    if not isinstance(explaining, bool):
        raise ProtocolError("parameter 'explain' must be true or false")
    decoded = await inference.decode_instances(state, entry, instances)
    job = inference.predict_job(entry, decoded) if not explaining else _explain_job(entry, decoded, parameters)
    answer = await unless_disconnected(request, inference.answer(state, job))
    assert isinstance(answer, PredictResponse | ExplainResponse), "V2 jobs answer JSON"
    tensors = _outputs(answer)
    wanted = _wanted(document, tensors)
    binary_out = {name for name, as_bytes in wanted.items() if as_bytes or parameters.get("binary_data_output")}
    entries, raw = write_outputs([tensors[name] for name in wanted], binary_out)
    body = {"model_name": entry.name, "model_version": entry.version, "outputs": entries,
            **({"id": document["id"]} if "id" in document else {})}
    header = orjson.dumps(body)
    if not raw:
        return Response(header, media_type="application/json")
    return Response(header + raw, media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(header))})


def _document(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    try:
        head, binary = split_body(body, header_length)
        document = orjson.loads(head)
    except TensorError as problem:
        raise ProtocolError(str(problem)) from None
    except orjson.JSONDecodeError as problem:
        raise ProtocolError(f"the request is not valid JSON ({problem})") from None
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise ProtocolError('the request must be an object with "inputs": [{"name", "shape", "datatype", "data"}]')
    return document, binary


def _instances(entry: ModelEntry, document: dict[str, Any], binary: bytes) -> list[Any]:
    """The input tensor's rows as the instances /predict takes."""
    try:
        tensors = read_inputs(document["inputs"], binary)
    except TensorError as problem:
        raise ProtocolError(str(problem)) from None
    if len(tensors) != 1 or tensors[0].name != INPUT:
        raise ProtocolError(f"model '{entry.name}' takes one input tensor named '{INPUT}' (GET /v2/models/"
                            f"{entry.name}); got {[t.name for t in tensors]}")
    tensor, spec = tensors[0], entry.spec.input
    if spec.kind == "text":
        if tensor.datatype != "BYTES" or len(tensor.shape) not in (1, 2) or tensor.shape[1:] not in ((), (1,)):
            raise ProtocolError(f"input '{INPUT}' of a text model is BYTES of shape [n] (one text each)")
        return list(tensor.values)
    if tensor.datatype == "BYTES" or list(tensor.shape[1:]) != spec.shape:
        raise ProtocolError(f"input '{INPUT}' must be numbers of shape [n, {', '.join(map(str, spec.shape))}], got "
                            f"{tensor.datatype} {list(tensor.shape)}")
    values = np.asarray(tensor.values, dtype=np.float64)
    if spec.kind == "tabular":
        return [list(row) for row in values.tolist()]
    return list(values.tolist())


def _explain_job(entry: ModelEntry, decoded: Any, parameters: dict[str, Any]) -> Job:
    composite = parameters.get("composite")
    if isinstance(composite, str) and composite.lstrip().startswith("{"):
        composite = _json_parameter("composite", composite)
    raw_params = parameters.get("params") or {}
    if isinstance(raw_params, str):
        raw_params = _json_parameter("params", raw_params)
    try:
        params = LRPParamsBody.model_validate(raw_params).model_dump(exclude_none=True)
    except ValidationError as problem:
        raise InvalidInputError("parameter 'params': " + describe_validation_errors(problem.errors(), "params")) \
            from None
    target = parameters.get("target")
    if isinstance(target, str) and target.lstrip().startswith("["):
        target = _json_parameter("target", target)
    return inference.explain_job(entry, decoded, target, composite, params)


def _json_parameter(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as problem:
        raise ProtocolError(f"parameter '{name}' is not valid JSON ({problem})") from None


def _outputs(answer: PredictResponse | ExplainResponse) -> dict[str, Tensor]:
    """Every output tensor of the answer."""
    if isinstance(answer, PredictResponse):
        logits = np.asarray([p.logits for p in answer.predictions], dtype=np.float32)
        probabilities = np.asarray([p.probabilities for p in answer.predictions], dtype=np.float32)
        return {"logits": _fp32("logits", logits), "probabilities": _fp32("probabilities", probabilities)}
    found = answer.explanations
    relevance = [np.asarray(e.relevance, dtype=np.float32) for e in found]
    if found and found[0].text is not None:  # texts: each row zero past its own tokens
        padded = np.zeros((len(relevance), max(len(r) for r in relevance)), dtype=np.float32)
        for row, values in zip(padded, relevance, strict=True):
            row[:len(values)] = values
        relevance = list(padded)
    return {"logits": _fp32("logits", np.asarray([e.all_logits for e in found], dtype=np.float32)),
            "probabilities": _fp32("probabilities", np.asarray([e.all_probabilities for e in found],
                                                               dtype=np.float32)),
            "relevance": _fp32("relevance", np.stack(relevance)),
            "target": Tensor("target", (len(found),), "INT64", np.asarray([e.target for e in found], dtype=np.int64))}


def _fp32(name: str, values: np.ndarray) -> Tensor:
    return Tensor(name, tuple(values.shape), "FP32", values)


def _wanted(document: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, bool]:
    """The outputs the request names (all when it names none), each with whether it wants binary data."""
    asked = document.get("outputs")
    if asked is None:
        return dict.fromkeys(tensors, False)
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise ProtocolError('outputs must be a list of {"name": ...}')
    unknown = [o["name"] for o in asked if o["name"] not in tensors]
    if unknown:
        more = "" if "relevance" in tensors else " (relevance and target need the parameter explain: true)"
        raise ProtocolError(f"unknown output(s) {unknown}; this request has {list(tensors)}{more}")
    return {o["name"]: bool((o.get("parameters") or {}).get("binary_data", False)) for o in asked}


def v2_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The protocol's error body."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)
