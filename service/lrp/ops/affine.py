"""Linear and Conv1d/2d: the ops whose rule the composite chooses (epsilon, zplus, gamma, ...).

Each is the linear map forward(x, W, b) = x W^T + b (or the convolution), with the closed-form input
vector-Jacobian product W^T s that every rule is written with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import torch
import torch.nn.functional as F

from service.lrp.graph import Node
from service.lrp.ops.spec import INT, SPATIAL, OpDef, Read, Reader, Site, UnsupportedCallError, attrs_of, ints_of

aten = torch.ops.aten


@dataclass(frozen=True)
class ConvAttrs:
    """A convolution's stride, padding and dilation per spatial dimension, and its groups."""

    stride: Annotated[list[int], SPATIAL]
    padding: Annotated[list[int], SPATIAL]
    dilation: Annotated[list[int], SPATIAL]
    groups: Annotated[int, INT]


@dataclass(frozen=True)
class AffineOp:
    """forward(x, W, b) = x W^T + b (or the convolution); input_vjp(s, W, x) = W^T s, shaped like x."""

    conv_dims: int = 0  # 0: Linear
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1

    @classmethod
    def from_node(cls, node: Node) -> AffineOp:
        """The map a Linear/Conv node applies."""
        if node.op == LINEAR.name:
            return cls()
        a = node.typed(ConvAttrs)
        return cls(len(a.stride), tuple(a.stride), tuple(a.padding), tuple(a.dilation), a.groups)

    @property
    def channel_dim(self) -> int:
        """The dimension of x and y that the weight's output rows index: features (-1) or channels (1)."""
        return 1 if self.conv_dims else -1

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """The layer's output for input x and parameters (weight, bias)."""
        if not self.conv_dims:
            return F.linear(x, weight, bias)
        conv = F.conv1d if self.conv_dims == 1 else F.conv2d
        return conv(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def input_vjp(self, s: torch.Tensor, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """W^T s: the gradient of <s, forward(x, W)> with respect to x (x only gives the shape)."""
        if not self.conv_dims:
            return s.matmul(weight)
        zeros = [0] * len(self.stride)
        grads = torch.ops.aten.convolution_backward(
            s, x, weight, None, list(self.stride), list(self.padding), list(self.dilation), False, zeros,
            self.groups, [True, False, False])
        grad: torch.Tensor = grads[0]
        return grad

    def per_channel(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A per-output-channel vector (a bias) shaped to broadcast against `like`."""
        return values if not self.conv_dims else values.view((1, -1) + (1,) * (like.dim() - 2))


def _forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    return AffineOp.from_node(node).forward(args[0], node.params["weight"], node.params.get("bias")), None


def _linear(site: Site) -> Read:
    return Read([site.tensor("input")], {}, _weights(site))


def _addmm(site: Site) -> Read:
    """addmm(bias, x, W) = x @ W + bias: a Linear with weight W^T (Hugging Face's Conv1D, GPT-2's projections)."""
    weight, bias = site.parameter("mat2"), site.parameter("self")
    if weight is None or bias is None or bias.dim() != 1 or site.arg("beta", 1) != 1 or site.arg("alpha", 1) != 1:
        raise UnsupportedCallError("addmm other than x @ W + b with parameters W and b")
    return Read([site.tensor("mat1")], {}, {"weight": weight.t(), "bias": bias})


def _weights(site: Site) -> dict[str, torch.Tensor]:
    weight, bias = site.parameter("weight"), site.parameter("bias")
    if weight is None:
        raise UnsupportedCallError(f"{site.target} without a weight")
    return {"weight": weight} | ({"bias": bias} if bias is not None else {})


def _conv_reader(dims: int) -> Reader:
    def read(site: Site) -> Read:
        weight = site.parameter("weight")
        assert weight is not None, "a convolution always has a weight"
        dilation = ints_of(site.arg("dilation", 1), dims)
        padding: Any = site.arg("padding", 0)
        if padding == "valid":
            padding = 0
        elif padding == "same":
            total = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:], strict=True)]
            if any(t % 2 for t in total):
                raise UnsupportedCallError(f"conv{dims}d with asymmetric padding='same' (even kernel)")
            padding = [t // 2 for t in total]
        return Read([site.tensor("input")], {"stride": ints_of(site.arg("stride", 1), dims),
                                             "padding": ints_of(padding, dims), "dilation": dilation,
                                             "groups": int(site.arg("groups", 1))}, _weights(site))

    return read


def _conv_def(dims: int, calls: tuple[Any, ...]) -> OpDef:
    return OpDef(f"conv{dims}d", f"Conv{dims}d", _forward, layer_type="conv",
                 attrs=attrs_of(ConvAttrs, dims),
                 params=("weight",), optional_params=("bias",), aten={call: _conv_reader(dims) for call in calls})


LINEAR = OpDef("linear", "Linear", _forward, layer_type="linear", params=("weight",), optional_params=("bias",),
               aten={aten.linear.default: _linear, aten.addmm.default: _addmm})
CONV1D = _conv_def(1, (aten.conv1d.default, aten.conv1d.padding))
CONV2D = _conv_def(2, (aten.conv2d.default, aten.conv2d.padding))
AFFINE = (LINEAR, CONV1D, CONV2D)
