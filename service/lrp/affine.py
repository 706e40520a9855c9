"""The linear map of a Linear or Conv node, with its input vector-Jacobian product (the closed-form backward)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from service.lrp import graph as ir


@dataclass(frozen=True)
class AffineOp:
    """forward(x, W, b) = x W^T + b (or the convolution); input_vjp(s, W, x) = W^T s, shaped like x."""

    op: str
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1

    @classmethod
    def from_node(cls, node: ir.Node) -> AffineOp:
        """The map a Linear/Conv IR node applies."""
        if node.op == ir.LINEAR:
            return cls(node.op)
        attrs = node.attrs
        return cls(node.op, tuple(attrs["stride"]), tuple(attrs["padding"]), tuple(attrs["dilation"]),
                   int(attrs["groups"]))

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """The layer's output for input x and parameters (weight, bias)."""
        if self.op == ir.LINEAR:
            return F.linear(x, weight, bias)
        conv = F.conv1d if self.op == ir.CONV1D else F.conv2d
        return conv(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def input_vjp(self, s: torch.Tensor, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """W^T s: the gradient of <s, forward(x, W)> with respect to x (x only gives the shape)."""
        if self.op == ir.LINEAR:
            return s.matmul(weight)
        zeros = [0] * len(self.stride)
        grads = torch.ops.aten.convolution_backward(
            s, x, weight, None, list(self.stride), list(self.padding), list(self.dilation), False, zeros,
            self.groups, [True, False, False])
        return grads[0]

    def channel_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """Shape that broadcasts a per-channel (dim 1) vector against x."""
        return (1, -1) + (1,) * (x.dim() - 2)
