"""The on-disk model format: `model.json` (graph, input spec, classes, defaults) + `weights.safetensors`.

Loading parses JSON and safetensors only, so it never runs code from the files. `load_model` checks the
files, the graph and that the weights fit it (one dry forward pass), and names the file and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from service.errors import ModelFileError, describe_validation_errors
from service.lrp import INPUT, Graph, LRPError, Node, PreparedModel
from service.store.spec import GraphSpec, ModelSpec, NodeSpec

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class LoadedModel:
    """A parsed, checked model directory: its spec, the graph holding float32 weights, and that graph
    prepared for LRP (BatchNorm folded) by the dry run that checked it."""

    name: str
    spec: ModelSpec
    graph: Graph
    prepared: PreparedModel


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


def graph_from_spec(spec: ModelSpec, tensors: Mapping[str, torch.Tensor]) -> Graph:
    """The IR graph of a model.json graph; nodes naming one safetensors key share that tensor."""
    first, *rest = spec.graph.nodes
    if first.op != INPUT or first.inputs or first.params:
        raise ValueError(f"the first node must be {{\"name\": ..., \"op\": \"input\"}}, got op '{first.op}'")
    used: set[str] = set()
    nodes = [Node(first.name, INPUT)]
    for node in rest:
        node.check()
        missing = {p: key for p, key in node.params.items() if key not in tensors}
        if missing:
            raise ValueError(f"node '{node.name}': {WEIGHTS_FILE} has no tensor(s) {sorted(missing.values())}")
        used.update(node.params.values())
        params = {p: tensors[key] for p, key in node.params.items()}
        nodes.append(Node(node.name, node.op, tuple(node.inputs), dict(node.attrs), params, node.module))
    unused = sorted(set(tensors) - used)
    if unused:
        raise ValueError(f"{WEIGHTS_FILE} holds tensor(s) no node uses: {unused}")
    return Graph(tuple(nodes), spec.graph.output, spec.output_activation)


def _dry_run(graph: Graph, spec: ModelSpec, name: str) -> PreparedModel:
    """Prepare the graph and run one zero input through it: weights that do not fit the graph fail here."""
    try:
        prepared = PreparedModel.from_graph(graph)
        logits = prepared.predict(torch.zeros(1, *spec.input.shape))
    except (LRPError, RuntimeError, ValueError, TypeError, IndexError, KeyError) as problem:
        raise ModelFileError(f"model '{name}': {WEIGHTS_FILE} does not fit the graph in {MODEL_FILE}: "
                             f"{str(problem).splitlines()[0]}") from None
    if tuple(logits.shape) != (1, len(spec.classes)):
        raise ModelFileError(f"model '{name}': {MODEL_FILE}: the graph gives {tuple(logits.shape[1:])} outputs "
                             f"per instance but \"classes\" lists {len(spec.classes)}")
    return prepared


# -- writing ---------------------------------------------------------------------------------------------
def spec_from_graph(graph: Graph, **fields: Any) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
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
