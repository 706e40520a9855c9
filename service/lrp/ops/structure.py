"""Ops that move or combine tensors: torch.cat, flatten and reshape (relevance follows the data), constants, and the
calls that are no op at all (Dropout in eval mode, contiguous, clone)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import torch

from service.lrp import dims
from service.lrp.graph import Node
from service.lrp.ops.spec import (
    INT,
    NON_BATCH_DIM,
    SIZES,
    AttrType,
    BackwardCall,
    OpDef,
    Read,
    Ref,
    Site,
    UnsupportedCallError,
    attrs_of,
    normalize_dim,
)

aten = torch.ops.aten


def pass_relevance(call: BackwardCall) -> list[torch.Tensor | None]:
    """R_in = R_out."""
    return [call.relevance]


@dataclass(frozen=True)
class CatAttrs:
    """torch.cat along `dim` (never the batch's)."""

    dim: Annotated[int, NON_BATCH_DIM]


@dataclass(frozen=True)
class FlattenAttrs:
    """flatten from `start_dim` (never the batch's) to `end_dim`."""

    start_dim: Annotated[int, NON_BATCH_DIM]
    end_dim: Annotated[int, INT]


@dataclass(frozen=True)
class ReshapeAttrs:
    """The output's shape: ints, or in a file {"expr": ...} sizes that follow the input's (bound before the
    forward, service.lrp.dims)."""

    shape: Annotated[list[int], SIZES]


@dataclass(frozen=True)
class CastAttrs:
    """The floating-point dtype converted to, by its torch name."""

    dtype: Annotated[str, AttrType("a floating-point dtype name (float32, float64, bfloat16, float16)",
                                   lambda v: v in ("float32", "float64", "bfloat16", "float16"))]


def _cat_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """Each input gets its own slice of the output relevance."""
    dim = call.node.typed(CatAttrs).dim
    return list(torch.split(call.relevance, [arg.shape[dim] for arg in call.args], dim=dim))


def _reshape_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """The output relevance in the input's shape."""
    return [call.relevance.reshape(call.args[0].shape)]


def batch_sized(ref: Ref, dim: int) -> bool:
    """Whether dimension `dim` of a captured tensor is (a multiple of) the batch."""
    return dims.uses(ref.shape[dim], 0)


def _cat(site: Site) -> Read:
    tensors = [t for t in site.arg("tensors") if isinstance(t, Ref)]
    dim = normalize_dim(int(site.arg("dim", 0)), tensors[0].rank)
    if batch_sized(tensors[0], dim):
        raise UnsupportedCallError(f"torch.cat along dimension {dim}, which is the batch")
    return Read(tensors, {"dim": dim})


def _flatten(site: Site) -> Read:
    x = site.tensor("self")
    start, end = (normalize_dim(int(site.arg(name, d)), max(x.rank, 1)) for name, d in
                  (("start_dim", 0), ("end_dim", -1)))
    if start == 0:
        return Read([x], {"shape": list(site.out_shape)}, op=RESHAPE_NAME)
    return Read([x], {"start_dim": start, "end_dim": end})


def _reshape(site: Site) -> Read:
    """The captured output shape, or where a size of it follows the input's values (rows a mask selected) the
    call's own sizes when they hold a -1 there instead (T5's view(batch, -1, hidden) of its <eos> rows)."""
    shape: list[Any] = list(site.out_shape)
    asked = site.args.get("size", site.args.get("shape"))
    if dims.holds_data_dependent(shape) and isinstance(asked, list | tuple) and list(asked).count(-1) == 1:
        shape = list(asked)
    return Read([site.tensor("self")], {"shape": shape})


RESHAPE_NAME = "reshape"
def _cat_forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, None]:
    return torch.cat(args, dim=node.typed(CatAttrs).dim), None


def _flatten_forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, None]:
    a = node.typed(FlattenAttrs)
    return args[0].flatten(a.start_dim, a.end_dim), None


def _reshape_forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, None]:
    return args[0].reshape(node.typed(ReshapeAttrs).shape), None


def _cast_forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, None]:
    return args[0].to(getattr(torch, node.typed(CastAttrs).dtype)), None


CAT = OpDef("cat", "torch.cat", _cat_forward, _cat_back, fixed_rule="gradient", inputs=None, attrs=attrs_of(CatAttrs),
            keeps_sign=True, aten={aten.cat.default: _cat})
FLATTEN = OpDef("flatten", "flatten", _flatten_forward, _reshape_back, fixed_rule="gradient",
                attrs=attrs_of(FlattenAttrs), keeps_sign=True, aten={aten.flatten.using_ints: _flatten})
RESHAPE = OpDef(RESHAPE_NAME, "view/reshape", _reshape_forward, _reshape_back, fixed_rule="gradient",
                attrs=attrs_of(ReshapeAttrs), keeps_sign=True,
                aten={aten.view.default: _reshape, aten.reshape.default: _reshape,
                      aten._unsafe_view.default: _reshape})
CONSTANT = OpDef("constant", "a parameter, buffer or constant tensor used directly",
                 lambda node, args: (node.params["value"], None), fixed_rule="none (a constant)", inputs=0,
                 params=("value",))


def _dropout(site: Site) -> Ref:
    """The input, in eval mode (named `self` in the in-place forms, `input` in the others)."""
    if site.arg("train", False):
        raise UnsupportedCallError("dropout in training mode: call model.eval() before explaining")
    return site.tensor("self" if "self" in site.args else "input")


# Calls that return their input (in eval mode): the capture reads through them and makes no node.
IDENTITY_LABEL = "Dropout, Identity, contiguous, clone, detach"
IDENTITY_CALLS: dict[Any, Callable[[Site], Ref]] = {
    aten.dropout.default: _dropout, aten.dropout_.default: _dropout, aten.feature_dropout.default: _dropout,
    aten.alpha_dropout.default: _dropout,
    **{call: (lambda site: site.tensor("self")) for call in (
        aten.contiguous.default, aten.clone.default, aten.alias.default, aten.detach.default,
        aten.lift_fresh_copy.default)}}


def _cast(site: Site) -> Read:
    dtype = site.arg("dtype")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise UnsupportedCallError(f"a conversion of an activation to {dtype} (only to floating-point types)")
    return Read([site.tensor("self")], {"dtype": str(dtype).removeprefix("torch.")})


def _type_as(site: Site) -> Read:
    """x.type_as(other): a cast of x to other's dtype (read from the call's output); other passes no relevance."""
    dtype = getattr(torch, site.out_dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise UnsupportedCallError(f"a conversion of an activation to {site.out_dtype or 'no tensor'} (only to "
                                   "floating-point types)")
    return Read([site.tensor("self")], {"dtype": site.out_dtype})


CAST = OpDef("cast", "conversion to another floating-point type", _cast_forward, pass_relevance, fixed_rule="pass",
             attrs=attrs_of(CastAttrs), keeps_sign=True,
             aten={aten._to_copy.default: _cast, aten.to.dtype: _cast, aten.to.dtype_layout: _cast,
                   aten.type_as.default: _type_as})
STRUCTURE = (CAT, FLATTEN, RESHAPE, CONSTANT, CAST)
