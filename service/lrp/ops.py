"""Forward and relevance backward of the layers without parameters: pass, norm and gradient routing.

Norm (sum, average pooling): R_in = x * vjp(layer, R / stab(layer(x))). Gradient (max pooling, cat,
flatten, reshape): R_in = vjp(layer, R). Pass (activations, unfolded BatchNorm): R_in = R.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from service.lrp import graph as ir
from service.lrp.rules import divide

Forward = Callable[[ir.Node, list[torch.Tensor]], tuple[torch.Tensor, Any]]
Backward = Callable[[ir.Node, list[torch.Tensor], torch.Tensor, Any, torch.Tensor, float], list[torch.Tensor]]

ACTIVATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "relu": lambda x: F.relu(x),
    "relu6": lambda x: F.relu6(x),
    "leaky_relu": lambda x, negative_slope=0.01: F.leaky_relu(x, negative_slope),
    "elu": lambda x, alpha=1.0: F.elu(x, alpha),
    "celu": lambda x, alpha=1.0: F.celu(x, alpha),
    "gelu": lambda x, approximate="none": F.gelu(x, approximate=approximate),
    "silu": lambda x: F.silu(x),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": lambda x, beta=1.0, threshold=20.0: F.softplus(x, beta, threshold),
    "selu": lambda x: F.selu(x),
    "mish": lambda x: F.mish(x),
    "hardswish": lambda x: F.hardswish(x),
    "hardsigmoid": lambda x: F.hardsigmoid(x),
    "hardtanh": lambda x, min_val=-1.0, max_val=1.0: F.hardtanh(x, min_val, max_val),
}
NONNEGATIVE_ACTIVATIONS = frozenset({"relu", "relu6", "sigmoid", "softplus", "hardsigmoid"})


# -- forward --------------------------------------------------------------------------------------------
def _activation(node: ir.Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
    kwargs = {k: v for k, v in node.attrs.items() if k != "fn"}
    return ACTIVATIONS[node.attrs["fn"]](args[0], **kwargs), None


def _batchnorm(node: ir.Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
    p = node.params
    out = F.batch_norm(args[0], p["running_mean"], p["running_var"], p.get("weight"), p.get("bias"),
                       training=False, eps=node.attrs["eps"])
    return out, None


def _maxpool(node: ir.Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
    a, x = node.attrs, args[0]
    if node.op == ir.MAXPOOL1D:
        x = x.unsqueeze(-2)
    out, indices = F.max_pool2d(x, _pool_param(node, "kernel_size", 1), _pool_param(node, "stride", 1),
                                _pool_param(node, "padding", 0), _pool_param(node, "dilation", 1), a["ceil_mode"],
                                return_indices=True)
    return (out.squeeze(-2) if node.op == ir.MAXPOOL1D else out), indices


def _avgpool(node: ir.Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
    a, x = node.attrs, args[0]
    pool = F.avg_pool1d if node.op == ir.AVGPOOL1D else F.avg_pool2d
    return pool(x, a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"]), None


def _adaptive_avgpool(node: ir.Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
    size = node.attrs["output_size"]
    if node.op == ir.ADAPTIVE_AVGPOOL1D:
        return F.adaptive_avg_pool1d(args[0], size[0]), None
    return F.adaptive_avg_pool2d(args[0], tuple(size)), None


def _pool_param(node: ir.Node, name: str, fill: int) -> list[int]:
    """A pooling hyperparameter in 2-d form; a 1-d pooling becomes the equivalent (1, k) 2-d pooling."""
    return [fill, *node.attrs[name]] if node.op.endswith("1d") else list(node.attrs[name])


FORWARD: dict[str, Forward] = {
    ir.ACTIVATION: _activation,
    ir.BATCHNORM: _batchnorm,
    ir.MAXPOOL1D: _maxpool,
    ir.MAXPOOL2D: _maxpool,
    ir.AVGPOOL1D: _avgpool,
    ir.AVGPOOL2D: _avgpool,
    ir.ADAPTIVE_AVGPOOL1D: _adaptive_avgpool,
    ir.ADAPTIVE_AVGPOOL2D: _adaptive_avgpool,
    ir.ADD: lambda node, args: (args[0] + args[1], None),
    ir.CAT: lambda node, args: (torch.cat(args, dim=node.attrs["dim"]), None),
    ir.FLATTEN: lambda node, args: (args[0].flatten(node.attrs["start_dim"], node.attrs["end_dim"]), None),
    ir.RESHAPE: lambda node, args: (args[0].reshape(args[0].shape[0], *node.attrs["shape"]), None),
}


# -- relevance backward ---------------------------------------------------------------------------------
def _pass(node: ir.Node, args: list[torch.Tensor], out: torch.Tensor, saved: Any, relevance: torch.Tensor,
          stabilizer: float) -> list[torch.Tensor]:
    return [relevance]


def _maxpool_back(node: ir.Node, args: list[torch.Tensor], out: torch.Tensor, saved: Any,
                  relevance: torch.Tensor, stabilizer: float) -> list[torch.Tensor]:
    x = args[0]
    one_d = node.op == ir.MAXPOOL1D
    grad = torch.ops.aten.max_pool2d_with_indices_backward(
        relevance.unsqueeze(-2) if one_d else relevance, x.unsqueeze(-2) if one_d else x,
        _pool_param(node, "kernel_size", 1), _pool_param(node, "stride", 1), _pool_param(node, "padding", 0),
        _pool_param(node, "dilation", 1), node.attrs["ceil_mode"], saved)
    return [grad.squeeze(-2) if one_d else grad]


def _avgpool_vjp(node: ir.Node, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The transpose of the average pooling applied to s."""
    one_d = node.op in (ir.AVGPOOL1D, ir.ADAPTIVE_AVGPOOL1D)
    s2, x2 = (s.unsqueeze(-2), x.unsqueeze(-2)) if one_d else (s, x)
    if node.op in (ir.ADAPTIVE_AVGPOOL1D, ir.ADAPTIVE_AVGPOOL2D):
        grad = torch.ops.aten._adaptive_avg_pool2d_backward(s2, x2)
    else:
        a = node.attrs
        grad = torch.ops.aten.avg_pool2d_backward(
            s2, x2, _pool_param(node, "kernel_size", 1), _pool_param(node, "stride", 1),
            _pool_param(node, "padding", 0), a["ceil_mode"], a["count_include_pad"], None)
    return grad.squeeze(-2) if one_d else grad


def _avgpool_back(node: ir.Node, args: list[torch.Tensor], out: torch.Tensor, saved: Any,
                  relevance: torch.Tensor, stabilizer: float) -> list[torch.Tensor]:
    s = divide(relevance, out, stabilizer)
    return [args[0] * _avgpool_vjp(node, s, args[0])]


def _add_back(node: ir.Node, args: list[torch.Tensor], out: torch.Tensor, saved: Any, relevance: torch.Tensor,
              stabilizer: float) -> list[torch.Tensor]:
    s = divide(relevance, out, stabilizer)
    return [(arg * s).sum_to_size(arg.shape) for arg in args]


def _cat_back(node: ir.Node, args: list[torch.Tensor], out: torch.Tensor, saved: Any, relevance: torch.Tensor,
              stabilizer: float) -> list[torch.Tensor]:
    dim = node.attrs["dim"]
    return list(torch.split(relevance, [arg.shape[dim] for arg in args], dim=dim))


def _reshape_back(node: ir.Node, args: list[torch.Tensor], out: torch.Tensor, saved: Any,
                  relevance: torch.Tensor, stabilizer: float) -> list[torch.Tensor]:
    return [relevance.reshape(args[0].shape)]


BACKWARD: dict[str, Backward] = {
    ir.ACTIVATION: _pass,
    ir.BATCHNORM: _pass,
    ir.MAXPOOL1D: _maxpool_back,
    ir.MAXPOOL2D: _maxpool_back,
    ir.AVGPOOL1D: _avgpool_back,
    ir.AVGPOOL2D: _avgpool_back,
    ir.ADAPTIVE_AVGPOOL1D: _avgpool_back,
    ir.ADAPTIVE_AVGPOOL2D: _avgpool_back,
    ir.ADD: _add_back,
    ir.CAT: _cat_back,
    ir.FLATTEN: _reshape_back,
    ir.RESHAPE: _reshape_back,
}


def nonnegative_outputs(graph: ir.Graph) -> set[str]:
    """Names of nodes whose output is >= 0 for every input (ReLU-like, then pools/reshapes/sums of those)."""
    found: set[str] = set()
    keeps_sign = {ir.MAXPOOL1D, ir.MAXPOOL2D, ir.AVGPOOL1D, ir.AVGPOOL2D, ir.ADAPTIVE_AVGPOOL1D,
                  ir.ADAPTIVE_AVGPOOL2D, ir.FLATTEN, ir.RESHAPE, ir.ADD, ir.CAT}
    for node in graph.nodes:
        if (node.op == ir.ACTIVATION and node.attrs["fn"] in NONNEGATIVE_ACTIVATIONS) or (
                node.op in keeps_sign and all(name in found for name in node.inputs)):
            found.add(node.name)
    return found
