"""Linear and Conv1d/2d: the ops whose rule the composite chooses (epsilon, zplus, gamma, ...).

Each is the linear map forward(x, W, b) = x W^T + b (or the convolution), with the closed-form input
vector-Jacobian product W^T s that every rule is written with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from service.lrp.graph import Node
from service.lrp.ops.spec import INT, Attr, OpDef, Site, UnsupportedCallError, ints, ints_of


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
        attrs = node.attrs
        return cls(len(attrs["stride"]), tuple(attrs["stride"]), tuple(attrs["padding"]), tuple(attrs["dilation"]),
                   int(attrs["groups"]))

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


def _forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
    return AffineOp.from_node(node).forward(args[0], node.params["weight"], node.params.get("bias")), None


def _linear(site: Site) -> tuple[list[Any], dict[str, Any]]:
    return [site.arg(0, "input")], {}


def _conv(site: Site) -> tuple[list[Any], dict[str, Any]]:
    module = site.module
    assert isinstance(module, nn.Conv1d | nn.Conv2d)
    dims = 1 if isinstance(module, nn.Conv1d) else 2
    if module.padding_mode != "zeros":
        raise UnsupportedCallError(f"{type(module).__name__} with padding_mode='{module.padding_mode}' "
                                   "(only 'zeros')")
    dilation = ints_of(module.dilation, dims)
    padding: Any = module.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, ints_of(module.kernel_size, dims), strict=True)]
        if any(t % 2 for t in total):
            raise UnsupportedCallError(f"{type(module).__name__} with asymmetric padding='same' (even kernel)")
        padding = [t // 2 for t in total]
    return [site.arg(0, "input")], {"stride": ints_of(module.stride, dims), "padding": ints_of(padding, dims),
                                 "dilation": dilation, "groups": int(module.groups)}


def _conv_def(dims: int, module: type[nn.Module]) -> OpDef:
    return OpDef(f"conv{dims}d", f"Conv{dims}d", _forward, layer_type="conv",
                 attrs=(Attr("stride", ints(dims)), Attr("padding", ints(dims)), Attr("dilation", ints(dims)),
                        Attr("groups", INT)),
                 params=("weight",), optional_params=("bias",), modules={module: _conv})


LINEAR = OpDef("linear", "Linear", _forward, layer_type="linear", params=("weight",), optional_params=("bias",),
               modules={nn.Linear: _linear})
CONV1D = _conv_def(1, nn.Conv1d)
CONV2D = _conv_def(2, nn.Conv2d)
AFFINE = (LINEAR, CONV1D, CONV2D)
