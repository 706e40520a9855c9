"""The LRP engine: one forward and one relevance backward over the graph, batched over samples.

The output relevance is seeded as one-hot(target) * logit; every node, in reverse execution order, hands
its relevance to its inputs by its rule, and relevance arriving at a tensor from several readers is summed.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Hashable, Iterable
from typing import Any

import torch
from torch import nn

from service.lrp import canonize, checks, composites, dims
from service.lrp import graph as ir
from service.lrp.capture import graph_from_module
from service.lrp.checks import Extra
from service.lrp.exceptions import ExplanationInputError
from service.lrp.explanation import Explanation, Method, output_from_logits
from service.lrp.flow import Flow
from service.lrp.ops import (
    BATCHNORM,
    COMPUTED,
    OPS,
    AffineOp,
    BackwardCall,
    Forward,
    nonnegative_outputs,
    rule_nodes,
)
from service.lrp.params import LRPParams
from service.lrp.rules import RULES, ZBOX, RuleInput, WeightVariants
from service.lrp.targets import Target, seed_for, selection_for, targets_for

RESOLVED_KEPT = 1024  # resolved methods remembered per model; past this the memory starts afresh


def _frozen(value: Any) -> Hashable:
    """A hashable copy of nested dicts, lists and scalars (dict keys sorted); other values as they are, or their
    repr when they cannot be hashed."""
    if isinstance(value, bool):
        return ("bool", value)  # True == 1 and hashes alike, but only 1 is a valid parameter
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("seq", *(_frozen(v) for v in value))
    if isinstance(value, torch.Tensor):
        return ("tensor", repr(value.tolist()))
    return value if isinstance(value, Hashable) else repr(value)


class PreparedModel:
    """A model ready for LRP: private parameter copies, BatchNorm folded, modified weights cached.

    Immutable after construction except for caches, so concurrent explains on one instance are safe.
    """

    def __init__(self, graph: ir.Graph) -> None:
        self.graph = graph
        self._steps = [(node, OPS[node.op]) for node in graph.steps]
        self._saving: dict[str, Forward] = {}
        for node, definition in self._steps:
            if definition.saving_forward is not None:
                self._saving[node.name] = definition.saving_forward
        self._nonnegative = nonnegative_outputs(graph)
        self._flow = Flow(graph)
        variants: dict[int, WeightVariants] = {}
        self._affine: dict[str, tuple[AffineOp, WeightVariants]] = {}
        for node in rule_nodes(graph):
            weight = node.params["weight"]
            shared = variants.setdefault(id(weight), WeightVariants(weight, node.params.get("bias")))
            self._affine[node.name] = (AffineOp.from_node(node), shared)
        self._assignments: dict[composites.Composite, dict[str, str]] = {}
        self._resolved: dict[Hashable, Method] = {}
        self._lock = threading.Lock()
        first = next((t for n in graph.nodes for t in n.params.values() if t.is_floating_point()), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self.dtype = first.dtype if first is not None else torch.get_default_dtype()
        self._binders = {node.name: _binder(node, self.device) for node, _ in self._steps
                         if dims.has_exprs(dict(node.attrs)) or (node.op == COMPUTED.name and not node.inputs)}
        self._tokens = graph.input.typed(ir.InputAttrs).dtype is not None
        self._extra = {node.typed(ir.ExtraInputAttrs).argument: (node, dims.binder(dict(node.attrs)))
                       for node in graph.extra_inputs}

    @classmethod
    def from_graph(cls, graph: ir.Graph) -> PreparedModel:
        """Copy the graph's tensors and fold its BatchNorms; the graph itself is left untouched."""
        return cls(canonize.fold_batchnorm(canonize.copy_params(graph)))

    @classmethod
    def from_module(cls, model: nn.Module, example: torch.Tensor, extra: Extra = None,
                    per_position: bool = False) -> PreparedModel:
        """Capture `model` with torch.export at `example` (any input of the model's kind: its batch and, for token
        ids, its length may differ later) and the extra inputs (keyword arguments of the forward, such as an
        attention_mask, shaped [batch, tokens, ...]); raises UnsupportedLayerError naming any op without a rule.
        `per_position`: a [batch, tokens, classes] output is every token's logits (see ir.Graph), not the last's."""
        graph = graph_from_module(model, example, extra)
        return cls.from_graph(dataclasses.replace(graph, per_position=per_position))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> PreparedModel:
        """A copy on another device or with another floating dtype."""
        moved: dict[int, torch.Tensor] = {}

        def move(t: torch.Tensor) -> torch.Tensor:
            return moved.setdefault(id(t), t.to(device=device, dtype=dtype if t.is_floating_point() else None))

        nodes = tuple(canonize.cast_node(n, dtype).with_params({k: move(v) for k, v in n.params.items()})
                      for n in self.graph.nodes)
        return PreparedModel(dataclasses.replace(self.graph, nodes=nodes))

    # -- rules -------------------------------------------------------------------------------------------
    def rules(self, composite: composites.CompositeSpec | composites.Composite) -> dict[str, str]:
        """The rule of every Linear/Conv node under `composite`, by node name (cached)."""
        resolved = composites.resolve(composite)
        found = self._assignments.get(resolved)
        if found is None:
            found = resolved.assign(self.graph)
            with self._lock:
                self._assignments[resolved] = found
        return found

    def resolve(self, composite: composites.CompositeSpec | composites.Composite, **params: object) -> Method:
        """Check a composite and its parameters against this model; raise ExplanationInputError saying how to fix
        them (an unknown composite or parameter, alpha - beta != 1, zbox without bounds or with per-channel bounds
        of the wrong length). Methods already resolved are remembered (at most RESOLVED_KEPT)."""
        key = _frozen((composite, params))
        found = self._resolved.get(key)
        if found is None:
            found = self._resolve(composite, params)
            with self._lock:
                if len(self._resolved) >= RESOLVED_KEPT:
                    self._resolved.clear()
                self._resolved[key] = found
        return found

    def _resolve(self, composite: composites.CompositeSpec | composites.Composite, params: dict[str, object]) -> Method:
        resolved = composites.resolve(composite)
        checked = LRPParams.from_kwargs(**params)
        resolved.check_params(params)
        for name, rule in self.rules(resolved).items():
            if rule == ZBOX:
                self._check_bounds(name, resolved.name, checked)
        return Method(resolved, checked)

    def _check_bounds(self, name: str, composite: str, params: LRPParams) -> None:
        """zbox needs low and high: scalars or one value per channel of the layer's input."""
        if params.low is None or params.high is None:
            raise ExplanationInputError(
                f"composite '{composite}' uses the zbox rule, which needs the parameters 'low' and 'high' "
                "(the lowest and highest values the input can take, e.g. low=0, high=1 for pixels in [0, 1])")
        op, weights = self._affine[name]
        channels = weights.weight.shape[1] * op.groups
        for bound, value in (("low", params.low), ("high", params.high)):
            if isinstance(value, tuple) and len(value) not in (1, channels):
                label = next(n.label for n in self.graph.nodes if n.name == name)
                raise ExplanationInputError(
                    f"parameter '{bound}' has {len(value)} values, but layer '{label}' (zbox rule) takes {channels} "
                    f"input channel(s): give one value, or {channels}")

    def layer_rules(self, composite: composites.CompositeSpec = "epsilon_plus_flat") -> list[dict[str, str]]:
        """Every layer with its op and rule (folded BatchNorms listed as folded), for documentation."""
        assigned = self.rules(composite)
        listed = []
        for node, definition in self._steps:
            rule = assigned.get(node.name) or definition.fixed_rule
            listed.append({"name": node.label, "node": node.name, "op": node.op, "rule": rule})
        for batchnorm, into in self.graph.folded.items():
            listed.append({"name": batchnorm, "node": batchnorm, "op": BATCHNORM.name, "rule": f"folded into {into}"})
        return listed

    # -- passes ------------------------------------------------------------------------------------------
    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return checks.input_tensor(x, self.graph.input, self._tokens, self.device, self.dtype)

    def _forward(self, x: torch.Tensor, extra: Extra = None, explaining: bool = False
                 ) -> tuple[dict[str, torch.Tensor], dict[str, object], dict[str, ir.Node]]:
        """Every node's value, what its forward saved (for a backward when `explaining`), and the nodes whose sizes
        follow the input, bound to it."""
        shape = tuple(x.shape)
        extra_values = checks.extra_inputs(extra, self._extra, shape, self.device)
        values: dict[str, torch.Tensor] = {self.graph.input.name: x, **extra_values}
        saved: dict[str, object] = {}
        bound: dict[str, ir.Node] = {}
        for node, definition in self._steps:
            bind = self._binders.get(node.name)
            if bind is not None:
                node = bound[node.name] = bind(shape)
            run = self._saving.get(node.name, definition.forward) if explaining else definition.forward
            values[node.name], saved[node.name] = run(node, [values[name] for name in node.inputs])
        return values, saved, bound

    def _logits(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The output; a [batch, tokens, classes] output is read at its last token (a language model), or whole,
        flattened to [batch, tokens * classes] (`per_position`: token classification)."""
        out = values[self.graph.output]
        if out.dim() != 3:
            return out
        return out.flatten(1) if self.graph.per_position else out[:, -1]

    def predict(self, x: torch.Tensor, extra: Extra = None) -> torch.Tensor:
        """The logits (the model's output before the final activation that preparation stripped)."""
        with torch.no_grad():
            return self._logits(self._forward(self._input(x), extra)[0])

    def output(self, x: torch.Tensor, extra: Extra = None) -> torch.Tensor:
        """The model's output: the logits after its final activation."""
        return output_from_logits(self.predict(x, extra), self.graph.output_activation)

    def input_gradient(self, x: torch.Tensor, target: Target = None, extra: Extra = None) -> torch.Tensor:
        """d logit_target / dx for each sample (None: the argmax), by autograd through the graph's forward; x must be
        floating point (token ids have no gradient)."""
        if self._tokens:
            raise ExplanationInputError("token ids have no gradient; the input gradient needs a floating-point input")
        x = self._input(x).requires_grad_()
        with torch.enable_grad():
            logits = self._logits(self._forward(x, extra)[0])
            chosen = logits.gather(1, targets_for(target, logits)[:, None]).sum()
            (gradient,) = torch.autograd.grad(chosen, x)
        return gradient

    def explain(self, x: torch.Tensor, target: Target = None,
                composite: composites.CompositeSpec | composites.Composite = "epsilon_plus_flat",
                layers: Iterable[str] = (), output_relevance: torch.Tensor | None = None, extra: Extra = None,
                **params: object) -> Explanation:
        """LRP relevance of `target` (None: argmax; per sample, one class or several explained together) for each
        sample of x; see `service.lrp.explain`.

        The seed is logits * selected (the selected classes' logits, zero elsewhere); `output_relevance`, when given,
        replaces it (same shape as the logits).
        """
        return self.explain_resolved(x, target, self.resolve(composite, **params), layers, output_relevance, extra)

    def explain_resolved(self, x: torch.Tensor, target: Target, method: Method, layers: Iterable[str] = (),
                         output_relevance: torch.Tensor | None = None, extra: Extra = None) -> Explanation:
        """`explain` with a Method from `resolve` (checked once, reused for every batch)."""
        assigned = self.rules(method.composite)
        wanted = self._layer_names(layers)
        x = self._input(x)
        with torch.no_grad():
            values, saved, bound = self._forward(x, extra, explaining=True)
            logits = self._logits(values)
            if logits.dim() != 2:
                raise ExplanationInputError(
                    f"the model's output has shape {tuple(logits.shape)}; LRP explains (batch, classes) outputs")
            selected = selection_for(target, logits)
            seed = seed_for(logits, selected, values[self.graph.output], self.graph.per_position, output_relevance)
            relevance, at_layers = self._backward(values, saved, bound, seed, assigned, method, wanted)
        return Explanation(relevance, logits, selected, self.graph.output_activation, at_layers)

    def _layer_names(self, layers: Iterable[str]) -> dict[str, str]:
        """Map node name -> requested name for the layers whose relevance the caller wants."""
        by_label = {n.label: n.name for n in self.graph.nodes} | {n.name: n.name for n in self.graph.nodes}
        wanted = {}
        for name in layers:
            if name not in by_label:
                raise ExplanationInputError(f"unknown layer '{name}'; layers are {sorted(by_label)}")
            wanted[by_label[name]] = name
        return wanted

    def _backward(self, values: dict[str, torch.Tensor], saved: dict[str, object], bound: dict[str, ir.Node],
                  seed: torch.Tensor, assigned: dict[str, str], method: Method,
                  wanted: dict[str, str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        params, attention = method.params, method.composite.attention
        stabilizer = params.epsilon if attention else params.stabilizer
        carries = self._flow.carrying(attention)
        relevance: dict[str, torch.Tensor] = {self.graph.output: seed}
        at_layers: dict[str, torch.Tensor] = {}
        for node, definition in reversed(self._steps):
            node = bound.get(node.name, node)
            incoming = relevance.pop(node.name, None)
            out = values.pop(node.name)
            if node.name in wanted:
                at_layers[wanted[node.name]] = incoming if incoming is not None else torch.zeros_like(out)
            if incoming is None:
                continue  # nothing downstream of this node reaches the target
            args = [values[name] for name in node.inputs]
            if node.name in self._affine:
                op, weights = self._affine[node.name]
                nonneg = node.inputs[0] in self._nonnegative
                rule_input = RuleInput(op, weights, args[0], out, incoming, params, nonneg)
                passed: list[torch.Tensor | None] = [RULES[assigned[node.name]](rule_input)]
            else:
                assert definition.backward is not None, "every op without a layer type has a fixed rule"
                live = tuple(name in carries for name in node.inputs)
                passed = definition.backward(BackwardCall(node, args, out, saved[node.name], incoming, stabilizer,
                                                          live, attention or "attnlrp"))
            for name, part in zip(node.inputs, passed, strict=True):
                if part is not None and name in carries:
                    relevance[name] = relevance[name] + part if name in relevance else part
        x = values[self.graph.input.name]
        result = relevance.get(self.graph.input.name, torch.zeros_like(x))
        return result.reshape(x.shape), at_layers


def _binder(node: ir.Node, device: torch.device) -> Any:
    """A function of the input's shape giving the node with its sizes evaluated (and a factory's device)."""
    bind_attrs = dims.binder(dict(node.attrs) | ({"device": str(device)} if node.op == COMPUTED.name else {}))
    return lambda shape: ir.Node(node.name, node.op, node.inputs, bind_attrs(shape), node.params, node.module)
