"""The Open Inference Protocol's codec: an infer request (its tensors in JSON or Triton's binary extension) becomes a
Job, and the job's results the output tensors.

Each model has one input, `input` (the instances /predict takes: FP32 [-1, *shape], or BYTES [-1] for a text model,
[-1, 2] for one reading a pair of texts) and the outputs `logits` and (but for a regression, whose logits are its
values, and a question answerer) `probabilities` (FP32 [-1, classes]; per token [-1, longest, classes]). The request
parameter `explain: true` (or asking for `relevance` or `target`) adds `relevance` (FP32 [-1, *shape]; text: [-1,
longest], zero past each text's own tokens) and `target` (INT64 [-1]: one class per instance, so several classes
explained together are /explain's); `composite`, `target` and `params` (an object, or its JSON text) are those of
/explain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from service.api.schemas import LRPParamsBody, TargetField
from service.api.v2.schemas import InferRequest
from service.api.v2.tensors import HEADER_LENGTH, Tensor, TensorError, read_inputs, write_outputs
from service.errors import InvalidInputError, ServiceError, describe_validation_errors
from service.inference import (
    Answered,
    Codec,
    Explained,
    Job,
    PipelineState,
    Predicted,
    decode_instances,
    explain_job,
    of_kind,
    predict_job,
)
from service.loader import ModelEntry

INPUT = "input"
PREDICTED = ("logits", "probabilities")
EXPLAINED = ("relevance", "target")


def predicted_outputs(entry: ModelEntry) -> tuple[str, ...]:
    """What a prediction outputs: the logits, and the probabilities unless the model is a regression (values only) or
    a question answerer (start and end logits per token)."""
    return ("logits",) if entry.spec.task in ("regression", "question_answering") else PREDICTED


def input_shape(entry: ModelEntry) -> list[int]:
    """The input tensor's shape: [-1, *shape], or BYTES [-1] for a text model ([-1, 2] for a pair model: each row
    its two texts in the order model.json names them)."""
    spec = entry.spec.input
    if spec.text is None:
        return [-1, *spec.shape]
    return [-1] if spec.text.pair is None else [-1, 2]
TARGETS: TypeAdapter[TargetField] = TypeAdapter(TargetField)


class ProtocolError(ServiceError):
    """A request that breaks the protocol itself (its JSON, its tensors, its parameters)."""

    status = 400
    code = "bad_request"


@dataclass(frozen=True)
class InferCall:
    """An infer request as read from its body: the JSON part, checked, the binary part after it, whether it explains
    (`explain: true`, or asking for an output only an explanation has: relevance, target) and the outputs it wants,
    each with whether as binary data."""

    request: InferRequest
    binary: bytes
    explaining: bool
    wanted: dict[str, bool]

    @classmethod
    def read(cls, body: bytes, header_length: str | None, entry: ModelEntry) -> InferCall:
        """The body split at Inference-Header-Content-Length (all JSON without it), its JSON part parsed and checked;
        a 400 for an output the model does not have, before anything runs."""
        if header_length is not None and (not header_length.isdigit() or int(header_length) > len(body)):
            raise ProtocolError(f"Inference-Header-Content-Length {header_length!r} is not a length within the body")
        cut = len(body) if header_length is None else int(header_length)
        try:
            document = orjson.loads(body[:cut])
        except orjson.JSONDecodeError as problem:
            raise ProtocolError(f"the request is not valid JSON ({problem})") from None
        try:
            request = InferRequest.model_validate(document)
        except ValidationError as problem:
            raise ProtocolError('the request must be an object with "inputs": [{"name", "shape", "datatype", '
                                '"data"}]: ' + describe_validation_errors(problem.errors(), "request")) from None
        asked = request.outputs
        explaining = request.parameters.explain or any(o.name in EXPLAINED for o in asked or [])
        return cls(request, body[cut:], explaining, _wanted(request, explaining, predicted_outputs(entry)))


def _wanted(request: InferRequest, explaining: bool, predicted: tuple[str, ...]) -> dict[str, bool]:
    """The outputs the request names (all it can have when it names none), each with whether it wants them as binary
    data; a 400 for an output the model does not have."""
    binary = request.parameters.binary_data_output
    if request.outputs is None:
        return dict.fromkeys(predicted + EXPLAINED if explaining else predicted, binary)
    unknown = [o.name for o in request.outputs if o.name not in predicted + EXPLAINED]
    if unknown:
        raise ProtocolError(f"unknown output(s) {unknown}; the model's outputs are {list(predicted + EXPLAINED)} "
                            "(GET /v2/models/{model})")
    return {o.name: bool((o.parameters or {}).get("binary_data", False)) or binary for o in request.outputs}


class V2Codec(Codec[InferCall, Response]):
    """POST /v2/models/{model}/infer (and its version's)."""

    async def decode_request(self, state: PipelineState, entry: ModelEntry, request: InferCall) -> Job:
        decoded = await decode_instances(state, entry, _instances(entry, request))
        parameters = request.request.parameters
        if not request.explaining:
            return predict_job(entry, decoded)
        if entry.per_token:
            raise InvalidInputError(f"model '{entry.name}' explains spans of its texts (a token classifier or a "
                                    "question answerer); the protocol's outputs hold one explanation per instance: "
                                    "explain it with POST /explain/{model}")
        composite, target = parameters.composite, parameters.target
        if isinstance(composite, str) and composite.lstrip().startswith("{"):
            composite = _json_parameter("composite", composite)
        raw_params = parameters.params or {}
        if isinstance(raw_params, str):
            raw_params = _json_parameter("params", raw_params)
        try:
            params = LRPParamsBody.model_validate(raw_params).model_dump(exclude_none=True)
        except ValidationError as problem:
            raise InvalidInputError("parameter 'params': " + describe_validation_errors(problem.errors(), "params")) \
                from None
        if isinstance(target, str) and target.lstrip().startswith(("[", "{")):
            target = _json_parameter("target", target)
        try:
            targets = TARGETS.validate_python(target, strict=True)
        except ValidationError as problem:
            raise InvalidInputError(
                "parameter 'target': a class index or label, {\"classes\": [...]}, or a list of them (null: the "
                "predicted class): " + describe_validation_errors(problem.errors(), "target")) from None
        job = explain_job(entry, decoded, targets, composite, params)
        if any(isinstance(sample.target, tuple) and len(sample.target) > 1 for sample in job.samples):
            raise InvalidInputError("parameter 'target': the target output holds one class per instance; explain "
                                    "several classes together with POST /explain/{model}")
        return job

    def encode_response(self, request: InferCall, job: Job, results: Sequence[Answered]) -> Response:
        tensors = outputs(job, results)
        wanted = request.wanted
        entries, raw = write_outputs([tensors[name] for name in wanted], {n for n, binary in wanted.items() if binary})
        body = {"model_name": job.entry.name, "model_version": job.entry.version, "outputs": entries,
                **({"id": request.request.id} if request.request.id is not None else {})}
        header = orjson.dumps(body)
        if not raw:
            return Response(header, media_type="application/json")
        return Response(header + raw, media_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(len(header))})


def _instances(entry: ModelEntry, request: InferCall) -> list[Any]:
    """The input tensor's rows as the instances /predict takes."""
    try:
        tensors = read_inputs(request.request.inputs, request.binary)
    except TensorError as problem:
        raise ProtocolError(str(problem)) from None
    if len(tensors) != 1 or tensors[0].name != INPUT:
        raise ProtocolError(f"model '{entry.name}' takes one input tensor named '{INPUT}' (GET /v2/models/"
                            f"{entry.name}); got {[t.name for t in tensors]}")
    tensor, spec = tensors[0], entry.spec.input
    pair = spec.text.pair if spec.text is not None else None
    if pair is not None:
        if tensor.datatype != "BYTES" or len(tensor.shape) != 2 or tensor.shape[1] != 2:
            raise ProtocolError(f"input '{INPUT}' of model '{entry.name}' is BYTES of shape [n, 2]: each row its "
                                f"{pair[0]} and its {pair[1]}")
        texts = list(tensor.values)
        instances: list[Any] = [dict(zip(pair, texts[i:i + 2], strict=True)) for i in range(0, len(texts), 2)]
    elif spec.kind == "text":
        if tensor.datatype != "BYTES" or len(tensor.shape) not in (1, 2) or tensor.shape[1:] not in ((), (1,)):
            raise ProtocolError(f"input '{INPUT}' of a text model is BYTES of shape [n] (one text each)")
        instances = list(tensor.values)
    elif tensor.datatype == "BYTES" or list(tensor.shape[1:]) != spec.shape:
        raise ProtocolError(f"input '{INPUT}' must be numbers of shape [n, {', '.join(map(str, spec.shape))}], got "
                            f"{tensor.datatype} {list(tensor.shape)}")
    else:
        instances = list(np.asarray(tensor.values, dtype=np.float64).tolist())
    if not instances:
        raise ProtocolError(f"input '{INPUT}' holds no instances (shape {list(tensor.shape)}); send at least one")
    return instances


def _json_parameter(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as problem:
        raise ProtocolError(f"parameter '{name}' is not valid JSON ({problem})") from None


def outputs(job: Job, results: Sequence[Answered]) -> dict[str, Tensor]:
    """Every output tensor the job's results give."""
    if job.key.method is None:
        predicted = of_kind(results, Predicted)
        return _scores(predicted)
    found = of_kind(results, Explained)
    return {**_scores(found), "relevance": _fp32("relevance", _stacked([e.relevance for e in found])),
            "target": Tensor("target", (len(found),), "INT64",
                             np.asarray([e.targets[0] for e in found], dtype=np.int64))}


def _scores(results: Sequence[Predicted | Explained]) -> dict[str, Tensor]:
    """The logits and (but for a regression's values) the probabilities of the results; a token classifier's
    [texts, longest, classes], zero past each text's own tokens."""
    scores = {"logits": _fp32("logits", _stacked([r.logits for r in results]))}
    chances = [r.probabilities for r in results if r.probabilities is not None]
    if len(chances) == len(results):
        scores["probabilities"] = _fp32("probabilities", _stacked(chances))
    return scores


def _stacked(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Rows stacked as float32; rows of different lengths (texts: one entry per token of their own) each padded
    with zeros to the longest."""
    padded = np.zeros((len(rows), max(len(row) for row in rows), *rows[0].shape[1:]), dtype=np.float32)
    for target, row in zip(padded, rows, strict=True):
        target[:len(row)] = row
    return padded


def _fp32(name: str, values: np.ndarray) -> Tensor:
    return Tensor(name, tuple(values.shape), "FP32", values.astype(np.float32, copy=False))


V2 = V2Codec()
