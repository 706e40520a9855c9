"""The on-disk model format: `model.json` (graph, input spec, classes, defaults) + `weights.safetensors`.

Loading parses JSON and safetensors only, so it never runs code from the files. `load_model` has the files vetted
in a child process first (service.vetting: sizes, nesting, node count, header, tokenizer), then checks the schema,
the graph and that the weights fit it (one dry forward pass), and names the file and the problem.
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
from service.lrp import INPUT, Graph, LRPError, Node, PreparedModel, check_input
from service.lrp.ops import EMBEDDING
from service.manifest.model_json import PER_POSITION_TASKS, GraphSpec, InputSpec, ModelSpec, NodeSpec
from service.modality.text import TextModel
from service.settings import LIMITS, ModelLimits
from service.store.files import version_of
from service.vetting.checks import MODEL_FILE, TOKENIZER_FILE, WEIGHTS_FILE
from service.vetting.run import vet

INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)


@dataclass(frozen=True)
class LoadedModel:
    """A parsed, checked model directory: its spec, the graph holding float32 weights (constants keep their integer
    dtype), that graph prepared for LRP (BatchNorm folded) by the dry run that checked it, the sha256 of its files
    (`version`) and a text model's tokenizer."""

    name: str
    spec: ModelSpec
    graph: Graph
    prepared: PreparedModel
    version: str
    text: TextModel | None = None


# -- reading ---------------------------------------------------------------------------------------------
def load_model(directory: Path, name: str | None = None, limits: ModelLimits = LIMITS) -> LoadedModel:
    """Vet `directory`'s files in a child process (service.vetting: their sizes against `limits`, model.json's
    nesting and node count, the safetensors header, a text model's tokenizer), then parse and check them as model
    `name` (default: the folder's name); raise ModelFileError naming the model, the file and the problem."""
    name = name or directory.name
    vet(directory, name, limits, EMBEDDING.name)
    spec = _read_spec(directory, name)
    tensors = _read_weights(directory / WEIGHTS_FILE, name)
    try:
        graph = graph_from_spec(spec, tensors)
        _check_inputs_fit(spec.input, graph)
    except ValueError as problem:
        raise ModelFileError(f"model '{name}': {MODEL_FILE}: graph: {problem}") from None
    text = TextModel.load(directory, spec.input, name) if spec.input.kind == "text" else None
    files = [directory / f for f in (MODEL_FILE, WEIGHTS_FILE, TOKENIZER_FILE) if (directory / f).is_file()]
    return LoadedModel(name, spec, graph, _dry_run(graph, spec, name, text), version_of(files), text)


def _check_inputs_fit(spec: InputSpec, graph: Graph) -> None:
    """Token ids in the graph exactly for a text input, whose T fits the graph's longest input; a text model's extra
    inputs are its attention mask and type ids (under the arguments model.json names), and other models take none."""
    tokens = graph.input.attrs.get("dtype") is not None
    if tokens != (spec.kind == "text"):
        raise ValueError("the graph's input takes token ids (it has a dtype) exactly when the input kind is text")
    longest = graph.input.attrs.get("max_tokens")
    if longest is not None and spec.shape[0] > longest:
        raise ValueError(f"the input's shape [{spec.shape[0]}] has more tokens than the graph takes ({longest})")
    arguments = sorted(node.attrs["argument"] for node in graph.extra_inputs)
    named = [] if spec.text is None else [spec.text.mask_argument, spec.text.type_argument]
    wanted = sorted(name for name in named if name is not None)
    if arguments != wanted:
        raise ValueError(f"the graph's extra inputs are {arguments}, but the input spec passes {wanted} (a text "
                         "model's attention mask and type ids, named by text.mask_argument and text.type_argument)")


def _read_spec(directory: Path, name: str) -> ModelSpec:
    """model.json (vetted: it exists, is JSON within the limits) checked against the schema."""
    document = json.loads((directory / MODEL_FILE).read_text(encoding="utf-8"))
    try:
        return ModelSpec.model_validate(document)
    except ValidationError as problem:
        details = describe_validation_errors(problem.errors(), whole="(top level)")
        raise ModelFileError(f"model '{name}': {MODEL_FILE}: {details}") from None


def _read_weights(path: Path, name: str) -> dict[str, torch.Tensor]:
    """The tensors (their header vetted), each floating point or integer and finite; floating ones as float32."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as problem:
        raise ModelFileError(f"model '{name}': {WEIGHTS_FILE} is not a valid safetensors file: {problem}") from None
    for key, tensor in tensors.items():
        if tensor.is_complex() or not (tensor.is_floating_point() or tensor.dtype in INTEGER_DTYPES):
            raise ModelFileError(f"model '{name}': {WEIGHTS_FILE}: tensor '{key}' has dtype {tensor.dtype}; "
                                 "tensors must be floating point (weights) or integer/bool (constants: position ids)")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"model '{name}': {WEIGHTS_FILE}: tensor '{key}' contains NaN or Inf")
    return {key: tensor.to(torch.float32) if tensor.is_floating_point() else tensor for key, tensor in tensors.items()}


def graph_from_spec(spec: ModelSpec, tensors: Mapping[str, torch.Tensor]) -> Graph:
    """The IR graph of a model.json graph; nodes naming one safetensors key share that tensor."""
    first, *rest = spec.graph.nodes
    if first.op != INPUT or first.inputs or first.params:
        raise ValueError(f"the first node must be {{\"name\": ..., \"op\": \"input\"}}, got op '{first.op}'")
    check_input(first.name, first.attrs, explained=True)
    used: set[str] = set()
    nodes = [Node(first.name, INPUT, (), dict(first.attrs))]
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
    return Graph(tuple(nodes), spec.graph.output, spec.output_activation,
                 per_position=spec.task in PER_POSITION_TASKS)


def probe_inputs(spec: InputSpec, text: TextModel | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Inputs of the model's kind to check and warm it up with: zeros, or (text) a batch of the texts "<pad>" and
    "<pad> <pad>" with the tokenizer's special tokens (a model may need them: T5 reads its <eos>), cut to T tokens,
    so that the first row is padded as a batch of texts pads it."""
    if text is None:
        return torch.zeros(1, *spec.shape), {}
    rows = [text.template_row(length) for length in (1, 2)]
    ids, extra, _ = text.pad(rows)
    return ids, extra


def _dry_run(graph: Graph, spec: ModelSpec, name: str, text: TextModel | None) -> PreparedModel:
    """Prepare the graph and run one input through it: weights that do not fit the graph fail here."""
    try:
        prepared = PreparedModel.from_graph(graph)
        x, extra = probe_inputs(spec.input, text)
        logits = prepared.predict(x, extra)
    except (LRPError, RuntimeError, ValueError, TypeError, IndexError, KeyError) as problem:
        raise ModelFileError(f"model '{name}': {WEIGHTS_FILE} does not fit the graph in {MODEL_FILE}: "
                             f"{str(problem).splitlines()[0]}") from None
    if text is not None and text.spec.pair is not None:
        _check_pair_types(prepared, text, name)
    per_instance = len(spec.classes) * (int(x.shape[1]) if graph.per_position else 1)  # per token, or once
    if tuple(logits.shape[1:]) != (per_instance,):
        said = f"{per_instance // len(spec.classes)} tokens x " if graph.per_position else ""
        raise ModelFileError(f"model '{name}': {MODEL_FILE}: the graph gives {tuple(logits.shape[1:])} outputs "
                             f"per instance but \"classes\" lists {said}{len(spec.classes)}")
    return prepared


def _check_pair_types(prepared: PreparedModel, text: TextModel, name: str) -> None:
    """A pair model runs on a row of its tokenizer's pair template (every type id it gives): type ids past the
    model's table refuse the model here, not a request later."""
    try:
        row = text.probe_row()
    except BaseException as problem:  # pyo3's PanicException derives from BaseException only
        if type(problem).__name__ != "PanicException":
            raise
        raise ModelFileError(f"model '{name}': {TOKENIZER_FILE} fails on a pair of texts ({str(problem)[:200]})") \
            from None
    try:
        prepared.predict(*text.pad([row])[:2])
    except (LRPError, RuntimeError, ValueError, TypeError, IndexError, KeyError) as problem:
        raise ModelFileError(f"model '{name}': {TOKENIZER_FILE}'s pair template gives type ids "
                             f"{sorted(set(row[1].tolist()))}, which the graph cannot take "
                             f"({str(problem).splitlines()[0]}); ship the tokenizer the model was trained with") \
            from None


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
            kept = tensor.detach().to(torch.float32) if tensor.is_floating_point() else tensor.detach()
            tensors[key] = kept.contiguous().clone()
            params[param] = key
        nodes.append(NodeSpec(name=node.name, op=node.op, inputs=list(node.inputs), attrs=dict(node.attrs),
                              params=params, module=node.module))
    spec = ModelSpec.model_validate({"graph": GraphSpec(nodes=nodes, output=graph.output),
                                     "output_activation": graph.output_activation, **fields})
    return spec, tensors


def save_model(directory: Path, spec: ModelSpec, tensors: Mapping[str, torch.Tensor]) -> None:
    """Write model.json and weights.safetensors into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_spec(directory, spec)
    save_file(dict(tensors), str(directory / WEIGHTS_FILE))


def write_spec(directory: Path, spec: ModelSpec) -> None:
    """Replace `directory`'s model.json with `spec` in one rename (the weights stay as they are)."""
    staged = directory / f".{MODEL_FILE}.new"
    staged.write_text(readable_json(spec.model_dump(mode="json", exclude_none=True)) + "\n", encoding="utf-8")
    staged.replace(directory / MODEL_FILE)


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
