"""The front door for nn.Modules: capture the model with torch.export (ATen ops, nothing patched, nothing decomposed)
and convert the captured graph into the LRP graph IR (service.lrp.convert).

The batch and, for token ids, the number of tokens are left to export as automatic dynamic sizes: export keeps them
symbolic (or finds their limits, such as the length of a position table) unless the forward fixes them, which the
conversion refuses. Extra inputs (an attention mask, token type ids) are keyword arguments of the forward, captured
with the same batch and tokens; they carry no relevance.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Mapping
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.export import Dim, ExportedProgram

from service.lrp import graph as ir
from service.lrp.convert import IN_PLACE_ON_VIEW, TOKENS_HINT, Converter
from service.lrp.exceptions import ExplanationInputError, ModelPreparationError, UnsupportedLayerError

_WRAPPERS = (torch.ops.higher_order.wrap_with_set_grad_enabled, torch.ops.higher_order.wrap_with_autocast)


def inline_wrappers(graph: torch.fx.Graph) -> None:
    """Inline the bodies of `torch.no_grad()` / `torch.autocast(...)` blocks (export wraps them in a call of a
    submodule; a rotary embedding computes its tables so): the explanation runs without autograd and in the model's
    dtype anyway."""
    module = graph.owning_module
    for call in [n for n in graph.nodes if n.op == "call_function" and n.target in _WRAPPERS]:
        position = next(i for i, a in enumerate(call.args) if isinstance(a, torch.fx.Node) and a.op == "get_attr")
        body = getattr(module, str(call.args[position].target)).graph
        values = iter(call.args[position + 1:])
        env: dict[torch.fx.Node, Any] = {}
        with graph.inserting_before(call):
            for node in body.nodes:
                if node.op == "placeholder":
                    env[node] = next(values)
                elif node.op == "output":
                    results = node.args[0]
                else:
                    env[node] = graph.node_copy(node, env.__getitem__)
        for user in list(call.users):
            assert user.target is operator.getitem, "a wrapped block's results are read by index"
            user.replace_all_uses_with(env[results[user.args[1]]])
            graph.erase_node(user)
        wrapped = call.args[position]
        graph.erase_node(call)
        if isinstance(wrapped, torch.fx.Node) and not wrapped.users:
            graph.erase_node(wrapped)


def _repeated(tensor: torch.Tensor, batch: int, tokens: int) -> torch.Tensor:
    """The tensor repeated `batch` times along dimension 0 and (when it has one) `tokens` times along dimension 1."""
    times = [batch] + [tokens if i == 1 else 1 for i in range(1, tensor.dim())]
    return tensor.repeat(*times) if tensor.dim() else tensor


def example_batch(example: torch.Tensor, extra: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    """The example (and the extra inputs alike) with at least two samples and, for token ids, two tokens, so that
    export keeps those sizes symbolic."""
    batch = 2 if example.shape[0] < 2 else 1
    tokens = 2 if not example.is_floating_point() and example.dim() >= 2 and example.shape[1] < 2 else 1
    return _repeated(example, batch, tokens), {k: _repeated(v.detach(), batch, tokens) for k, v in extra.items()}


def _dynamic(tensor: torch.Tensor, tokens: bool) -> dict[int, Any]:
    return {i: Dim.AUTO for i in range(min(tensor.dim(), 2 if tokens else 1))}


def _check(module: nn.Module, example: Any, extra: Mapping[str, Any]) -> str:
    """The name of the forward's first parameter, once the inputs are known to be usable."""
    for name, value in (("x", example), *extra.items()):
        if not isinstance(value, torch.Tensor):
            raise ExplanationInputError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if example.dim() < (2 if example.is_floating_point() else 1):
        raise ExplanationInputError(f"x must have a batch dimension first; got shape {tuple(example.shape)}")
    parameters = list(inspect.signature(module.forward).parameters)
    unknown = [name for name in extra if name not in parameters]
    if unknown or not parameters:
        raise ExplanationInputError(
            f"extra input(s) {unknown} are not arguments of {type(module).__name__}.forward ({parameters})")
    bad = [name for name, v in extra.items() if v.dim() < 1 or v.shape[0] != example.shape[0]]
    if bad:
        raise ExplanationInputError(f"extra input(s) {bad} must have the batch ({example.shape[0]}) first")
    return parameters[0]


def export(module: nn.Module, example: torch.Tensor,
           extra: Mapping[str, torch.Tensor] | None = None) -> ExportedProgram:
    """torch.export of the module at `example` (and the keyword arguments `extra`), batch and tokens dynamic."""
    extra = dict(extra or {})
    first = _check(module, example, extra)
    example, extra = example_batch(example.detach(), extra)
    weight = next((p for p in module.parameters() if p.is_floating_point()), None)
    if weight is not None and example.is_floating_point():
        example = example.to(device=weight.device, dtype=weight.dtype)
    tokens = not example.is_floating_point()
    sizes = {first: _dynamic(example, tokens)} | {name: _dynamic(v, tokens) for name, v in extra.items()}
    try:
        return torch.export.export(module, (example,), kwargs=extra, dynamic_shapes=sizes, strict=False)
    except Exception as error:  # export raises many types; all mean "cannot capture"
        said = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = TOKENS_HINT if tokens else (
            "Models whose forward branches on tensor values cannot be captured; move that logic out of forward.")
        raise ModelPreparationError(f"torch.export could not capture {type(module).__name__}: {said} {hint}") from error


def graph_from_module(module: nn.Module, example: torch.Tensor,
                      extra: Mapping[str, torch.Tensor] | None = None) -> ir.Graph:
    """Capture `module` at `example` (with the keyword arguments `extra`, which carry no relevance) and convert it;
    raise UnsupportedLayerError naming every op without a rule. A graph that writes in place into a view of a tensor
    that carries relevance (T5's decoder ids, shifted from the input's by slice assignment) is converted as torch
    functionalizes it (`run_decompositions({})`: the write a `slice_scatter` / `select_scatter`, composite ops
    decomposed), so that the relevance follows the data through it."""
    program = export(module, example, extra)
    inline_wrappers(program.graph)
    try:
        return Converter(program, type(module).__name__, list(extra or {})).run()
    except UnsupportedLayerError as refused:
        if not any(IN_PLACE_ON_VIEW in what for _, what in refused.nodes):
            raise
    functional = program.run_decompositions({})  # torch's functionalization: an in-place call on a view, a scatter
    inline_wrappers(functional.graph)
    return Converter(functional, type(module).__name__, list(extra or {})).run()
