"""Graph canonicalisation: private parameter copies, BatchNorm folded into the affine node before it, and nodes
retargeted to another floating dtype."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from service.lrp import graph as ir
from service.lrp.ops import BATCHNORM, COMPUTED, LAYOUT, OPS
from service.lrp.ops.normalization import BatchNormAttrs


def copy_params(graph: ir.Graph) -> ir.Graph:
    """The same graph holding private tensor copies, so that nothing the engine does touches the model.

    Tensors shared between nodes (a module called twice) stay shared in the copy.
    """
    copies: dict[int, torch.Tensor] = {}

    def private(tensor: torch.Tensor) -> torch.Tensor:
        key = id(tensor)
        if key not in copies:
            copies[key] = tensor.detach().clone()
        return copies[key]

    nodes = tuple(node.with_params({k: private(v) for k, v in node.params.items()}) for node in graph.nodes)
    return dataclasses.replace(graph, nodes=nodes, folded=dict(graph.folded))


def fold_batchnorm(graph: ir.Graph) -> ir.Graph:
    """Fold every BatchNorm whose input is a Linear/Conv read by nothing else into that layer's parameters.

    W' = W * g / sqrt(var + eps) (per output channel), b' = (b - mean) * g / sqrt(var + eps) + beta,
    computed in float64 and stored in the layer's dtype. Other BatchNorms stay (the pass rule applies).
    """
    users = graph.consumers()
    by_name = {node.name: node for node in graph.nodes}
    replaced: dict[str, ir.Node] = {}
    renamed: dict[str, str] = {}
    folded = dict(graph.folded)
    for node in graph.nodes:
        if node.op != BATCHNORM.name:
            continue
        (source,) = node.inputs
        layer = by_name[source]
        channels = node.params["running_mean"].shape[0]
        if (layer.op not in OPS or not OPS[layer.op].layer_type or users[source] != [node.name] or source in replaced
                or layer.params["weight"].shape[0] != channels):
            continue
        replaced[source] = layer.with_params(_folded_params(layer, node))
        renamed[node.name] = source
        folded[node.label] = layer.label
    nodes = []
    for node in graph.nodes:
        if node.name in renamed:
            continue
        node = replaced.get(node.name, node)
        inputs = tuple(renamed.get(name, name) for name in node.inputs)
        nodes.append(ir.Node(node.name, node.op, inputs, node.attrs, node.params, node.module))
    return dataclasses.replace(graph, nodes=tuple(nodes), output=renamed.get(graph.output, graph.output), folded=folded)


def _folded_params(layer: ir.Node, batchnorm: ir.Node) -> dict[str, torch.Tensor]:
    weight = layer.params["weight"]
    dtype = weight.dtype
    stats = {k: v.to(torch.float64) for k, v in batchnorm.params.items()}
    mean, var = stats["running_mean"], stats["running_var"]
    gain = stats.get("weight", torch.ones_like(mean))
    shift = stats.get("bias", torch.zeros_like(mean))
    scale = gain / torch.sqrt(var + batchnorm.typed(BatchNormAttrs).eps)
    bias = layer.params.get("bias")
    old_bias = bias.to(torch.float64) if bias is not None else torch.zeros_like(mean)
    new_weight = weight.to(torch.float64) * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    new_bias = (old_bias - mean) * scale + shift
    return {"weight": new_weight.to(dtype), "bias": new_bias.to(dtype)}


def cast_node(node: ir.Node, dtype: torch.dtype | None) -> ir.Node:
    """A node converting to a floating dtype retargeted to the prepared model's (a float64 copy computes in float64):
    a cast, or a replayed call with a floating dtype argument (a mask made with `.to(x.dtype)`)."""
    if dtype is None or not dtype.is_floating_point or node.op not in ("cast", COMPUTED.name, LAYOUT.name):
        return node
    name = str(dtype).removeprefix("torch.")
    if node.op == "cast":
        return ir.Node(node.name, node.op, node.inputs, {"dtype": name}, node.params, node.module)

    def retarget(value: Any) -> Any:
        if isinstance(value, dict):
            floating = isinstance(value.get("dtype"), str) and getattr(torch, value["dtype"]).is_floating_point
            return {"dtype": name} if floating else {k: retarget(v) for k, v in value.items()}
        return [retarget(v) for v in value] if isinstance(value, list) else value

    return ir.Node(node.name, node.op, node.inputs, {**node.attrs, "args": retarget(node.attrs["args"])},
                   node.params, node.module)
