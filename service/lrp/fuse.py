"""Element-wise activation modules that write their function out as arithmetic, fused back into one activation node.

Hugging Face's NewGELUActivation (GPT-2's `gelu_new`; likewise FastGELU, AccurateGELU and CLIP's QuickGELU)
computes 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))):
captured call by call, the product and sum rules would split its relevance between `0.5 x` and the tanh branch, and
the constant 1 would absorb a share. AttnLRP passes relevance through an activation unchanged, so one call of such a
module becomes one `activation` node (R_in = R_out), as lxt's GPT-2 patch does. A run is fused only when it reads one
tensor, only its last node is read outside it, and it computes the named function on a probe within float32 error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from service.lrp import graph as ir
from service.lrp.ops import ACTIVATIONS, CONSTANT, OPS
from service.lrp.ops.activation import ACTIVATION

GELU_TANH: tuple[str, dict[str, Any]] = ("gelu", {"approximate": "tanh"})
WRITTEN_OUT: dict[str, tuple[str, dict[str, Any]]] = {  # module class name -> the activation it computes
    "NewGELUActivation": GELU_TANH, "FastGELUActivation": GELU_TANH, "AccurateGELUActivation": GELU_TANH,
    "QuickGELUActivation": ("quick_gelu", {})}
PROBE = torch.linspace(-8.0, 8.0, 4001)


def fuse_activations(nodes: Sequence[ir.Node], classes: Mapping[str, str]) -> list[ir.Node]:
    """`nodes` with each call of a WRITTEN_OUT module (`classes`: module path -> class name) as one activation node
    named like the call's last node; a call that is not what its class name says stays as it is."""
    fused: list[ir.Node] = []
    index = 0
    while index < len(nodes):
        module = nodes[index].module
        if not module or classes.get(module) not in WRITTEN_OUT:
            fused.append(nodes[index])
            index += 1
            continue
        end = index + 1
        while end < len(nodes) and (nodes[end].module == module or nodes[end].op == CONSTANT.name):
            end += 1
        while nodes[end - 1].op == CONSTANT.name:  # constants after the call belong to what follows it
            end -= 1
        run = nodes[index:end]
        one = _one_node(run, nodes, *WRITTEN_OUT[classes[module]])
        fused.extend(run if one is None else [one])
        index = end
    return fused


def _one_node(run: Sequence[ir.Node], nodes: Sequence[ir.Node], fn: str, options: dict[str, Any]) -> ir.Node | None:
    """The activation node that replaces `run`, or None when the run reads more than one tensor, is read outside
    through another node than its last, or does not compute `fn` on PROBE."""
    inside = {node.name for node in run}
    read = {name for node in run for name in node.inputs if name not in inside}
    leaked = any(name in inside and name != run[-1].name
                 for node in nodes if node.name not in inside for name in node.inputs)
    if len(read) != 1 or leaked:
        return None
    (source,) = read
    values = {source: PROBE}
    try:
        for node in run:
            values[node.name] = OPS[node.op].forward(node, [values[name] for name in node.inputs])[0]
    except (RuntimeError, ValueError, IndexError, KeyError):  # not element-wise: it cannot take a 1-D probe
        return None
    expected = ACTIVATIONS[fn].function(PROBE, **options)
    if values[run[-1].name].shape != expected.shape or not torch.allclose(
            values[run[-1].name].double(), expected.double(), rtol=1e-4, atol=1e-5):
        return None
    return ir.Node(run[-1].name, ACTIVATION.name, (source,), {"fn": fn, **options}, {}, run[0].module)
