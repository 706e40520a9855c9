"""Ops that move or combine tensors: torch.cat, flatten and reshape (relevance follows the data), constants, and the
calls that are no op at all (Dropout in eval mode, contiguous, clone)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from service.lrp import dims
from service.lrp.ops.spec import (
    INT,
    NON_BATCH_DIM,
    SIZES,
    Attr,
    AttrType,
    BackwardCall,
    OpDef,
    Read,
    Ref,
    Site,
    UnsupportedCallError,
    normalize_dim,
)

aten = torch.ops.aten


def pass_relevance(call: BackwardCall) -> list[torch.Tensor | None]:
    """R_in = R_out."""
    return [call.relevance]


def _cat_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """Each input gets its own slice of the output relevance."""
    dim = call.node.attrs["dim"]
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
    return Read([site.tensor("self")], {"shape": list(site.out_shape)})


RESHAPE_NAME = "reshape"
CAT = OpDef("cat", "torch.cat", lambda node, args: (torch.cat(args, dim=node.attrs["dim"]), None), _cat_back,
            fixed_rule="gradient", inputs=None, attrs=(Attr("dim", NON_BATCH_DIM),), keeps_sign=True,
            aten={aten.cat.default: _cat})
FLATTEN = OpDef("flatten", "flatten",
                lambda node, args: (args[0].flatten(node.attrs["start_dim"], node.attrs["end_dim"]), None),
                _reshape_back, fixed_rule="gradient", attrs=(Attr("start_dim", NON_BATCH_DIM), Attr("end_dim", INT)),
                keeps_sign=True, aten={aten.flatten.using_ints: _flatten})
RESHAPE = OpDef(RESHAPE_NAME, "view/reshape", lambda node, args: (args[0].reshape(node.attrs["shape"]), None),
                _reshape_back, fixed_rule="gradient", attrs=(Attr("shape", SIZES),), keeps_sign=True,
                aten={aten.view.default: _reshape, aten.reshape.default: _reshape,
                      aten._unsafe_view.default: _reshape})
CONSTANT = OpDef("constant", "a parameter, buffer or constant tensor used directly",
                 lambda node, args: (node.params["value"], None), fixed_rule="none (a constant)", inputs=0,
                 params=("value",))


def _dropout(site: Site) -> Ref:
    if site.arg("train", False):
        raise UnsupportedCallError("dropout in training mode: call model.eval() before explaining")
    return site.tensor("input")


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


_FLOAT_TYPES = AttrType("a floating-point dtype name (float32, float64, bfloat16, float16)",
                        lambda v: v in ("float32", "float64", "bfloat16", "float16"))
CAST = OpDef("cast", "conversion to another floating-point type", lambda node, args: (
    args[0].to(getattr(torch, node.attrs["dtype"])), None), pass_relevance, fixed_rule="pass",
    attrs=(Attr("dtype", _FLOAT_TYPES),), keeps_sign=True,
    aten={aten._to_copy.default: _cast, aten.to.dtype: _cast, aten.to.dtype_layout: _cast})
STRUCTURE = (CAT, FLATTEN, RESHAPE, CONSTANT, CAST)
