"""The on-disk model format: `model.json` (graph, input spec, classes, defaults) + `weights.safetensors`.

Loading parses JSON and safetensors only, so it never runs code from the files. `load_model` checks the
files, the graph and that the weights fit it (one dry forward pass), and names the file and the problem.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from service.errors import ModelFileError, describe_validation_errors
from service.lrp import LRPError, PreparedModel
from service.lrp import graph as ir
from service.lrp.ops import ACTIVATIONS

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"

Bound = float | list[float]
PositiveInt = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageSpec(_Strict):
    """How an uploaded image becomes the input tensor: convert to `mode`, resize to (H, W) of the shape,
    scale pixels to the input range, then (x - mean) / std per channel."""

    mode: Literal["L", "RGB"]
    mean: list[float]
    std: list[Annotated[float, Field(gt=0)]]


class Standardization(_Strict):
    """Tabular features are fed to the model as (x - mean) / std, per feature."""

    mean: list[float]
    std: list[Annotated[float, Field(gt=0)]]


class InputSpec(_Strict):
    """One instance: its kind, shape (no batch dimension) and raw value range (scalar or per channel)."""

    kind: Literal["tensor", "image", "tabular"]
    shape: list[PositiveInt] = Field(min_length=1)
    range: tuple[Bound, Bound] | None = None
    image: ImageSpec | None = None
    features: list[str] | None = None
    standardization: Standardization | None = None
    example: Any = None

    @model_validator(mode="after")
    def _kind_fits(self) -> InputSpec:
        if self.kind == "image":
            if self.image is None or len(self.shape) != 3:
                raise ValueError("an image input needs \"image\": {mode, mean, std} and a shape [C, H, W]")
            channels = 1 if self.image.mode == "L" else 3
            if self.shape[0] != channels or len(self.image.mean) != channels or len(self.image.std) != channels:
                raise ValueError(f"image mode {self.image.mode} has {channels} channel(s): shape[0], mean and std "
                                 "must agree with it")
            if self.range is None:
                raise ValueError("an image input needs \"range\": the values pixels 0 and 255 map to, e.g. [0, 1]")
        if self.kind == "tabular":
            if self.features is None or len(self.shape) != 1 or len(self.features) != self.shape[0]:
                raise ValueError("a tabular input needs a shape [N] and N feature names in \"features\"")
            if len(set(self.features)) != len(self.features):
                raise ValueError("feature names must be unique")
            if self.standardization is not None and not (
                    len(self.standardization.mean) == len(self.standardization.std) == self.shape[0]):
                raise ValueError("standardization mean and std need one value per feature")
        return self


class NodeSpec(_Strict):
    """One graph node; `params` maps a parameter name to its key in weights.safetensors."""

    name: str = Field(min_length=1)
    op: str
    inputs: list[str] = []
    attrs: dict[str, Any] = {}
    params: dict[str, str] = {}
    module: str = ""


class GraphSpec(_Strict):
    """Nodes in execution order (the first is the input) and the node whose value is the logits."""

    nodes: list[NodeSpec] = Field(min_length=2)
    output: str


class BatchingSpec(_Strict):
    """Per-model batching limits and CPU threads per pass; each one left out takes the LRP_* setting."""

    max_batch_size: PositiveInt | None = None
    max_delay_ms: Annotated[int, Field(ge=0)] | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    cpu_threads: PositiveInt | None = None


class ModelSpec(_Strict):
    """The whole model.json document."""

    format_version: Literal[1] = 1
    description: str = ""
    input: InputSpec
    classes: list[str] = Field(min_length=1)
    output_activation: Literal["logits", "softmax", "log_softmax", "sigmoid"] = "logits"
    default_composite: str | dict[str, Any] = "epsilon_plus_flat"
    default_params: dict[str, Any] = {}
    metrics: dict[str, float | int | str] = {}
    batching: BatchingSpec | None = None
    graph: GraphSpec


@dataclass(frozen=True)
class LoadedModel:
    """A parsed, checked model directory: its spec, the graph holding float32 weights, and that graph
    prepared for LRP (BatchNorm folded) by the dry run that checked it."""

    name: str
    spec: ModelSpec
    graph: ir.Graph
    prepared: PreparedModel


# -- per-op checks of the graph ----------------------------------------------------------------------------
Check = Callable[[Any], bool]


def _ints(count: int) -> Check:
    return lambda v: isinstance(v, list) and len(v) == count and all(_is_int(i) for i in v)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(i) for i in value)


@dataclass(frozen=True)
class _OpSpec:
    inputs: int  # 0: any number >= 1
    attrs: Mapping[str, Check]
    params: tuple[str, ...] = ()
    optional_params: tuple[str, ...] = ()


def _conv(dims: int) -> _OpSpec:
    return _OpSpec(1, {"stride": _ints(dims), "padding": _ints(dims), "dilation": _ints(dims), "groups": _is_int},
                   ("weight",), ("bias",))


def _maxpool(dims: int) -> _OpSpec:
    return _OpSpec(1, {"kernel_size": _ints(dims), "stride": _ints(dims), "padding": _ints(dims),
                       "dilation": _ints(dims), "ceil_mode": lambda v: isinstance(v, bool)})


def _avgpool(dims: int) -> _OpSpec:
    return _OpSpec(1, {"kernel_size": _ints(dims), "stride": _ints(dims), "padding": _ints(dims),
                       "ceil_mode": lambda v: isinstance(v, bool), "count_include_pad": lambda v: isinstance(v, bool)})


OPS: dict[str, _OpSpec] = {
    ir.LINEAR: _OpSpec(1, {}, ("weight",), ("bias",)),
    ir.CONV1D: _conv(1),
    ir.CONV2D: _conv(2),
    ir.BATCHNORM: _OpSpec(1, {"eps": _is_number}, ("running_mean", "running_var"), ("weight", "bias")),
    ir.ACTIVATION: _OpSpec(1, {"fn": lambda v: v in ACTIVATIONS}),
    ir.MAXPOOL1D: _maxpool(1),
    ir.MAXPOOL2D: _maxpool(2),
    ir.AVGPOOL1D: _avgpool(1),
    ir.AVGPOOL2D: _avgpool(2),
    ir.ADAPTIVE_AVGPOOL1D: _OpSpec(1, {"output_size": _ints(1)}),
    ir.ADAPTIVE_AVGPOOL2D: _OpSpec(1, {"output_size": _ints(2)}),
    ir.ADD: _OpSpec(2, {}),
    ir.CAT: _OpSpec(0, {"dim": lambda v: _is_int(v) and v != 0}),
    ir.FLATTEN: _OpSpec(1, {"start_dim": lambda v: _is_int(v) and v != 0, "end_dim": _is_int}),
    ir.RESHAPE: _OpSpec(1, {"shape": _int_list}),
}


def _activation_options(fn: str) -> set[str]:
    """The keyword arguments an activation accepts besides its input (e.g. negative_slope)."""
    if fn not in ACTIVATIONS:
        return set()
    try:
        return set(list(inspect.signature(ACTIVATIONS[fn]).parameters)[1:])
    except (TypeError, ValueError):  # builtins such as torch.tanh take no options
        return set()


def _check_node(node: NodeSpec) -> None:
    """Raise ValueError saying what is wrong with one node's op, inputs, attrs or params."""
    if node.op == ir.INPUT:
        raise ValueError(f"node '{node.name}': only the first node may be the input")
    spec = OPS.get(node.op)
    if spec is None:
        raise ValueError(f"node '{node.name}': unsupported op '{node.op}'; supported ops are {sorted(OPS)}")
    if (spec.inputs and len(node.inputs) != spec.inputs) or not node.inputs:
        raise ValueError(f"node '{node.name}': op '{node.op}' takes {spec.inputs or 'one or more'} input(s), "
                         f"got {len(node.inputs)}")
    allowed = set(spec.attrs) | (_activation_options(node.attrs.get("fn", "")) if node.op == ir.ACTIVATION else set())
    for name, check in spec.attrs.items():
        if name not in node.attrs or not check(node.attrs[name]):
            raise ValueError(f"node '{node.name}': op '{node.op}' needs a valid attribute '{name}', "
                             f"got {node.attrs.get(name)!r}")
    extra = sorted(set(node.attrs) - allowed)
    if extra:
        raise ValueError(f"node '{node.name}': unknown attribute(s) {extra} for op '{node.op}'")
    missing = [p for p in spec.params if p not in node.params]
    extra_params = sorted(set(node.params) - set(spec.params) - set(spec.optional_params))
    if missing or extra_params:
        raise ValueError(f"node '{node.name}': op '{node.op}' needs params {list(spec.params)} "
                         f"(optional {list(spec.optional_params)}); missing {missing}, unknown {extra_params}")


# -- reading ---------------------------------------------------------------------------------------------
def load_model(directory: Path) -> LoadedModel:
    """Parse and check `directory`; raise ModelFileError naming the model, the file and the problem."""
    name = directory.name
    spec = _read_spec(directory, name)
    tensors = _read_weights(directory / WEIGHTS_FILE, name)
    try:
        graph = graph_from_spec(spec, tensors)
    except ValueError as problem:
        raise ModelFileError(f"model '{name}': {MODEL_FILE}: graph: {problem}") from None
    return LoadedModel(name, spec, graph, _dry_run(graph, spec, name))


def _read_spec(directory: Path, name: str) -> ModelSpec:
    path = directory / MODEL_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"model '{name}': {MODEL_FILE} is missing from {directory}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise ModelFileError(f"model '{name}': {MODEL_FILE} is not valid JSON: {problem}") from None
    try:
        return ModelSpec.model_validate(document)
    except ValidationError as problem:
        details = describe_validation_errors(problem.errors(), whole="(top level)")
        raise ModelFileError(f"model '{name}': {MODEL_FILE}: {details}") from None


def _read_weights(path: Path, name: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelFileError(f"model '{name}': {WEIGHTS_FILE} is missing from {path.parent}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as problem:
        raise ModelFileError(f"model '{name}': {WEIGHTS_FILE} is not a valid safetensors file: {problem}") from None
    for key, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise ModelFileError(f"model '{name}': {WEIGHTS_FILE}: tensor '{key}' has dtype {tensor.dtype}; "
                                 "weights must be floating point")
        if not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"model '{name}': {WEIGHTS_FILE}: tensor '{key}' contains NaN or Inf")
    return {key: tensor.to(torch.float32) for key, tensor in tensors.items()}


def graph_from_spec(spec: ModelSpec, tensors: Mapping[str, torch.Tensor]) -> ir.Graph:
    """The IR graph of a model.json graph; nodes naming one safetensors key share that tensor."""
    first, *rest = spec.graph.nodes
    if first.op != ir.INPUT or first.inputs or first.params:
        raise ValueError(f"the first node must be {{\"name\": ..., \"op\": \"input\"}}, got op '{first.op}'")
    used: set[str] = set()
    nodes = [ir.Node(first.name, ir.INPUT)]
    for node in rest:
        _check_node(node)
        missing = {p: key for p, key in node.params.items() if key not in tensors}
        if missing:
            raise ValueError(f"node '{node.name}': {WEIGHTS_FILE} has no tensor(s) {sorted(missing.values())}")
        used.update(node.params.values())
        params = {p: tensors[key] for p, key in node.params.items()}
        nodes.append(ir.Node(node.name, node.op, tuple(node.inputs), dict(node.attrs), params, node.module))
    unused = sorted(set(tensors) - used)
    if unused:
        raise ValueError(f"{WEIGHTS_FILE} holds tensor(s) no node uses: {unused}")
    return ir.Graph(tuple(nodes), spec.graph.output, spec.output_activation)


def _dry_run(graph: ir.Graph, spec: ModelSpec, name: str) -> PreparedModel:
    """Prepare the graph and run one zero input through it: weights that do not fit the graph fail here."""
    try:
        prepared = PreparedModel.from_graph(graph)
        logits, _ = prepared.predict(torch.zeros(1, *spec.input.shape))
    except (LRPError, RuntimeError, ValueError, TypeError, IndexError, KeyError) as problem:
        raise ModelFileError(f"model '{name}': {WEIGHTS_FILE} does not fit the graph in {MODEL_FILE}: "
                             f"{str(problem).splitlines()[0]}") from None
    if tuple(logits.shape) != (1, len(spec.classes)):
        raise ModelFileError(f"model '{name}': {MODEL_FILE}: the graph gives {tuple(logits.shape[1:])} outputs "
                             f"per instance but \"classes\" lists {len(spec.classes)}")
    return prepared


# -- writing ---------------------------------------------------------------------------------------------
def spec_from_graph(graph: ir.Graph, **fields: Any) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """A ModelSpec (other fields as given) and the tensors of `graph`, keyed `<node>.<param>` by first use."""
    keys: dict[int, str] = {}
    tensors: dict[str, torch.Tensor] = {}
    nodes = []
    for node in graph.nodes:
        params = {}
        for param, tensor in node.params.items():
            key = keys.setdefault(id(tensor), f"{node.name}.{param}")
            tensors[key] = tensor.detach().to(torch.float32).contiguous().clone()
            params[param] = key
        nodes.append(NodeSpec(name=node.name, op=node.op, inputs=list(node.inputs), attrs=dict(node.attrs),
                              params=params, module=node.module))
    spec = ModelSpec.model_validate({"graph": GraphSpec(nodes=nodes, output=graph.output),
                                     "output_activation": graph.output_activation, **fields})
    return spec, tensors


def save_model(directory: Path, spec: ModelSpec, tensors: Mapping[str, torch.Tensor]) -> None:
    """Write model.json and weights.safetensors into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    document = spec.model_dump(mode="json", exclude_none=True)
    (directory / MODEL_FILE).write_text(readable_json(document) + "\n", encoding="utf-8")
    save_file(dict(tensors), str(directory / WEIGHTS_FILE))


def readable_json(value: Any, indent: str = "") -> str:
    """JSON with one line per value that fits in 110 characters, and nested indentation otherwise."""
    flat = json.dumps(value)
    if len(indent) + len(flat) <= 110 or not isinstance(value, dict | list) or not value:
        return flat
    inner = indent + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {readable_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if all(not isinstance(v, dict | list) for v in value):  # a long list of numbers: packed lines
        lines, line = [], ""
        for item in (json.dumps(v) for v in value):
            if line and len(inner) + len(line) + len(item) > 105:
                lines.append(line)
                line = ""
            line += (", " if line else "") + item
        return "[\n" + ",\n".join(inner + text for text in [*lines, line]) + f"\n{indent}]"
    return "[\n" + ",\n".join(f"{inner}{readable_json(v, inner)}" for v in value) + f"\n{indent}]"
