"""Pooling: max pooling routes relevance to the winner (the gradient); average pooling uses the norm rule
R_in = x * vjp(pool, R / stab(pool(x))). 1-d poolings run as the equivalent (1, k) 2-d ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F

from service.lrp.graph import Node
from service.lrp.ops.spec import (
    BOOL,
    SPATIAL,
    BackwardCall,
    OpDef,
    Read,
    Reader,
    Site,
    UnsupportedCallError,
    attrs_of,
    ints_of,
)
from service.lrp.stabilize import divide

aten = torch.ops.aten


@dataclass(frozen=True)
class MaxPoolAttrs:
    """Max pooling's window: per spatial dimension its size, step, padding and dilation; ceil_mode as torch's."""

    kernel_size: Annotated[list[int], SPATIAL]
    stride: Annotated[list[int], SPATIAL]
    padding: Annotated[list[int], SPATIAL]
    dilation: Annotated[list[int], SPATIAL]
    ceil_mode: Annotated[bool, BOOL]


@dataclass(frozen=True)
class AvgPoolAttrs:
    """Average pooling's window: per spatial dimension its size, step and padding; ceil_mode and
    count_include_pad as torch's."""

    kernel_size: Annotated[list[int], SPATIAL]
    stride: Annotated[list[int], SPATIAL]
    padding: Annotated[list[int], SPATIAL]
    ceil_mode: Annotated[bool, BOOL]
    count_include_pad: Annotated[bool, BOOL]


@dataclass(frozen=True)
class AdaptiveAttrs:
    """Adaptive average pooling's output size per spatial dimension."""

    output_size: Annotated[list[int], SPATIAL]


def _dims(node: Node) -> int:
    return 1 if node.op.endswith("1d") else 2


def _as_2d(node: Node, values: list[int], fill: int) -> list[int]:
    """A pooling hyperparameter in 2-d form; a 1-d pooling becomes the equivalent (1, k) 2-d pooling."""
    return [fill, *values] if _dims(node) == 1 else list(values)


def _lift(node: Node, x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(-2) if _dims(node) == 1 else x


def _drop(node: Node, x: torch.Tensor) -> torch.Tensor:
    return x.squeeze(-2) if _dims(node) == 1 else x


def _max_window(node: Node) -> tuple[list[int], list[int], list[int], list[int], bool]:
    """kernel size, stride, padding, dilation (2-d) and ceil_mode."""
    a = node.typed(MaxPoolAttrs)
    return (_as_2d(node, a.kernel_size, 1), _as_2d(node, a.stride, 1), _as_2d(node, a.padding, 0),
            _as_2d(node, a.dilation, 1), a.ceil_mode)


def _maxpool(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    out, indices = F.max_pool2d(_lift(node, args[0]), *_max_window(node), return_indices=True)
    return _drop(node, out), indices


def _maxpool_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """Winner takes all: the gradient of max pooling applied to R."""
    node, args, saved, relevance = call.node, call.args, call.saved_tensor(), call.relevance
    grad = torch.ops.aten.max_pool2d_with_indices_backward(
        _lift(node, relevance), _lift(node, args[0]), *_max_window(node), saved)
    return [_drop(node, grad)]


def _avgpool(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    a = node.typed(AvgPoolAttrs)
    pool = F.avg_pool1d if _dims(node) == 1 else F.avg_pool2d
    return pool(args[0], a.kernel_size, a.stride, a.padding, a.ceil_mode, a.count_include_pad), None


def _adaptive_avgpool(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    size = node.typed(AdaptiveAttrs).output_size
    if _dims(node) == 1:
        return F.adaptive_avg_pool1d(args[0], size[0]), None
    return F.adaptive_avg_pool2d(args[0], (size[0], size[1])), None


def _avgpool_vjp(node: Node, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The transpose of the average pooling applied to s."""
    s2, x2 = _lift(node, s), _lift(node, x)
    if node.op.startswith("adaptive_"):
        return _drop(node, torch.ops.aten._adaptive_avg_pool2d_backward(s2, x2))
    a = node.typed(AvgPoolAttrs)
    return _drop(node, torch.ops.aten.avg_pool2d_backward(
        s2, x2, _as_2d(node, a.kernel_size, 1), _as_2d(node, a.stride, 1), _as_2d(node, a.padding, 0),
        a.ceil_mode, a.count_include_pad, None))


def _avgpool_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """Norm rule: R_in = x * vjp(pool, R / stab(pool(x)))."""
    s = divide(call.relevance, call.out, call.stabilizer)
    return [call.args[0] * _avgpool_vjp(call.node, s, call.args[0])]


def _max_reader(dims: int) -> Reader:
    def read(site: Site) -> Read:
        kernel = site.arg("kernel_size")
        return Read([site.tensor("self")], {
            "kernel_size": ints_of(kernel, dims), "stride": ints_of(site.arg("stride") or kernel, dims),
            "padding": ints_of(site.arg("padding", 0), dims), "dilation": ints_of(site.arg("dilation", 1), dims),
            "ceil_mode": bool(site.arg("ceil_mode", False))})

    return read


def _avg_reader(dims: int) -> Reader:
    def read(site: Site) -> Read:
        if site.arg("divisor_override") is not None:
            raise UnsupportedCallError("average pooling with divisor_override")
        kernel = site.arg("kernel_size")
        return Read([site.tensor("self")], {
            "kernel_size": ints_of(kernel, dims), "stride": ints_of(site.arg("stride") or kernel, dims),
            "padding": ints_of(site.arg("padding", 0), dims), "ceil_mode": bool(site.arg("ceil_mode", False)),
            "count_include_pad": bool(site.arg("count_include_pad", True))})

    return read


def _adaptive_reader(dims: int) -> Reader:
    def read(site: Site) -> Read:
        return Read([site.tensor("self")], {"output_size": ints_of(site.arg("output_size"), dims)})

    return read


def _maxpool_def(dims: int) -> OpDef:
    return OpDef(f"maxpool{dims}d", f"MaxPool{dims}d", _maxpool, _maxpool_back, fixed_rule="gradient",
                 attrs=attrs_of(MaxPoolAttrs, dims), keeps_sign=True,
                 aten={aten.max_pool1d.default if dims == 1 else aten.max_pool2d.default: _max_reader(dims)})


def _avgpool_def(dims: int) -> OpDef:
    return OpDef(f"avgpool{dims}d", f"AvgPool{dims}d", _avgpool, _avgpool_back, fixed_rule="norm",
                 attrs=attrs_of(AvgPoolAttrs, dims), keeps_sign=True,
                 aten={aten.avg_pool1d.default if dims == 1 else aten.avg_pool2d.default: _avg_reader(dims)})


def _adaptive_def(dims: int) -> OpDef:
    call = aten.adaptive_avg_pool1d.default if dims == 1 else aten.adaptive_avg_pool2d.default
    return OpDef(f"adaptive_avgpool{dims}d", f"AdaptiveAvgPool{dims}d", _adaptive_avgpool, _avgpool_back,
                 fixed_rule="norm", attrs=attrs_of(AdaptiveAttrs, dims), keeps_sign=True,
                 aten={call: _adaptive_reader(dims)})


POOLING = (_maxpool_def(1), _maxpool_def(2), _avgpool_def(1), _avgpool_def(2), _adaptive_def(1), _adaptive_def(2))
