"""The Open Inference Protocol's bodies (KServe V2, REST) as pydantic models: the infer request is validated by them
and every /v2 route's OpenAPI entry is generated from them. The tensors' values (`data`, flat or nested, or binary)
are read by service.api.v2.tensors."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, NonNegativeInt, StrictBool

from service.api.v2.tensors import DATATYPES


def _known_datatype(datatype: str) -> str:
    if datatype not in DATATYPES:
        raise ValueError(f"datatype {datatype!r} is not one of {list(DATATYPES)}")
    return datatype


def _true_or_false(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("parameter 'explain' must be true or false")
    return value


Datatype = Annotated[str, AfterValidator(_known_datatype), Field(json_schema_extra={"enum": list(DATATYPES)})]


class RequestTensor(BaseModel):
    """An input tensor: its values in `data` (row-major, flat or nested), or with `parameters.binary_data_size` that
    many bytes of the body's binary part."""

    name: str
    shape: list[NonNegativeInt]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestedOutput(BaseModel):
    """An output the client wants; `parameters.binary_data: true` asks for it in the binary part."""

    name: str
    parameters: dict[str, Any] | None = None


class InferParameters(BaseModel):
    """The request's parameters: `explain: true` adds `relevance` and `target`; `composite`, `target` and `params`
    are /explain's (a rule map, a target list and `params` also as their JSON text); `binary_data_output` asks for
    every output in the binary part. Other parameters are ignored."""

    model_config = ConfigDict(extra="allow")

    explain: Annotated[bool, BeforeValidator(_true_or_false)] = False
    composite: str | dict[str, Any] | None = None
    target: Any = None
    params: str | dict[str, Any] | None = None
    binary_data_output: StrictBool = False


class InferRequest(BaseModel):
    """POST /v2/models/{model}/infer: the model's one input tensor, `input`."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 0.8, 0.2]}],
        "parameters": {"explain": True, "composite": "epsilon"}}]})

    id: str | None = None
    parameters: InferParameters = InferParameters()
    inputs: list[RequestTensor]
    outputs: list[RequestedOutput] | None = None


class ResponseTensor(BaseModel):
    """An output tensor: `data` in JSON, or `parameters.binary_data_size` bytes of the binary part."""

    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    """The output tensors (JSON, or the JSON header and binary tensors after it)."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseTensor]


class TensorMetadata(BaseModel):
    """A tensor's name, datatype and shape (-1: any size)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """A model's one input and its outputs."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    """The server's name, version and protocol extensions."""

    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class V2Error(BaseModel):
    """Every /v2 error answer: one message that says what to fix."""

    error: str


def error(description: str, example: str) -> dict[str, Any]:
    """An error answer for the OpenAPI document, with an example of its own."""
    return {"model": V2Error, "description": description, "content": {"application/json": {"example": {
        "error": example}}}}


Documented = dict[int | str, dict[str, Any]]
NOT_FOUND: Documented = {404: error("No model of that name", "no model named 'cat'; available models are ['digits']")}
NOT_READY: Documented = {503: error("Still loading, or shutting down",
                                    "the service is still loading its models; retry shortly")}
INFER_ERRORS: Documented = {
    200: {"model": InferResponse, "content": {"application/octet-stream": {}},
          "description": "The output tensors (JSON, or the JSON header and binary tensors after it)"},
    400: error("The request breaks the protocol: its JSON, tensors or parameters", "input 'input' must be numbers "
               "of shape [n, 1, 8, 8], got FP32 [3, 64]"),
    **NOT_FOUND,
    413: error("More instances or bytes than the limits allow", "65 inputs in one request; the limit is 64"),
    422: error("Values the model cannot use (range, composite, parameters, targets)", "unknown composite 'x'"),
    500: error("A server fault (details in the log)", "internal server error; the details are in the server log"),
    **NOT_READY,
    504: error("Waited in the queue past LRP_REQUEST_TIMEOUT_S", "the request waited more than 30 s in the queue"),
}
