"""Ops that replay one ATen call by name, its arguments stored as JSON.

- `layout`: an op that moves, copies or selects data (transpose, permute, slice, expand, masked_fill, ...). Its
  output is a linear function of each live input, so relevance follows the data: R_in = vjp(op, R_out).
- `computed`: a tensor computed from constants and sizes only (position ids, a causal mask, rotary tables). It
  depends on no input that is explained, so it carries no relevance.

Stored arguments: a tensor input is {"input": i} (the node's i-th input), a dtype {"dtype": "float32"}, a device
{"device": "model"} (the prepared model's), a size that follows the input {"expr": ...}, a non-finite float
{"float": "-inf"}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch

from service.lrp import dims
from service.lrp.graph import Node
from service.lrp.ops.spec import (
    ANY_INPUTS,
    BOOL,
    INT,
    AttrType,
    BackwardCall,
    OpDef,
    Read,
    Reader,
    Ref,
    Site,
    UnevenSelectionError,
    UnsupportedCallError,
    attrs_of,
)

# Ops whose output is a linear map of each tensor input that moves, copies or selects elements.
LAYOUT_TARGETS = frozenset({
    "transpose.int", "permute.default", "unsqueeze.default", "squeeze.dim", "squeeze.dims", "squeeze.default",
    "expand.default", "slice.Tensor", "select.int", "narrow.default", "t.default",
    "unflatten.int", "movedim.int", "flip.default", "roll.default",
    "repeat.default", "constant_pad_nd.default", "masked_fill.Scalar", "masked_fill.Tensor", "where.self",
    "index.Tensor", "index_select.default", "gather.default", "repeat_interleave.self_int", "tril.default",
    "triu.default", "diagonal.default", "expand_as.default", "view_as.default", "reshape_as.default",
    "unfold.default", "pad.default", "split.Tensor", "split_with_sizes.default", "chunk.default", "unbind.int",
    "copy.default", "slice_scatter.default", "select_scatter.default"})
# Ops a `computed` node may replay besides those: factories, comparisons, arithmetic and casts on constants.
COMPUTED_TARGETS = LAYOUT_TARGETS | frozenset({
    "arange.default", "arange.start", "arange.start_step", "full.default", "ones.default", "zeros.default",
    "ones_like.default", "zeros_like.default", "full_like.default", "scalar_tensor.default", "eq.Scalar", "eq.Tensor",
    "ne.Scalar", "ne.Tensor", "ge.Scalar", "ge.Tensor", "gt.Scalar", "gt.Tensor", "le.Scalar", "le.Tensor",
    "lt.Scalar", "lt.Tensor", "logical_and.default", "logical_or.default", "logical_not.default",
    "bitwise_and.Tensor", "bitwise_or.Tensor", "bitwise_not.default", "bitwise_and.Scalar", "bitwise_or.Scalar",
    "add.Tensor", "add.Scalar", "sub.Tensor", "sub.Scalar", "rsub.Scalar", "mul.Tensor", "mul.Scalar", "div.Tensor",
    "div.Scalar", "div.Tensor_mode", "neg.default", "pow.Tensor_Scalar", "pow.Scalar", "exp.default", "log.default",
    "sin.default", "cos.default", "sqrt.default", "rsqrt.default", "reciprocal.default", "abs.default",
    "cumsum.default", "sum.dim_IntList", "sum.default", "mean.dim", "amax.default", "any.dim", "all.dim",
    "matmul.default", "bmm.default", "mm.default", "cat.default", "stack.default", "clone.default",
    "contiguous.default", "alias.default", "lift_fresh_copy.default", "_to_copy.default", "to.dtype", "to.device",
    "to.dtype_layout", "type_as.default", "float.default", "long.default", "bool.default", "embedding.default",
    "floor_divide.default", "remainder.Scalar", "minimum.default", "maximum.default", "clamp.default",
    "clamp_min.default", "detach.default", "outer.default", "einsum.default", "split.Tensor", "chunk.default",
    "diff.default", "new_ones.default", "new_zeros.default", "new_full.default", "__and__.Tensor", "__or__.Tensor",
    "__invert__.default", "argmax.default", "max.dim", "min.dim", "floor.default", "ceil.default", "view.default",
    "reshape.default", "_unsafe_view.default", "flatten.using_ints", "baddbmm.default", "softmax.int",
    "where.ScalarOther", "where.ScalarSelf", "where.Scalar", "min.other", "max.other", "sign.default", "sgn.default",
    "fill.Scalar", "fill.Tensor", "zero.default", "copy.default", "clamp.Tensor", "clamp_max.default",
    "log2.default", "log1p.default", "expm1.default", "sigmoid.default", "tanh.default", "relu.default",
    "round.default", "trunc.default", "fmod.Scalar", "remainder.Tensor", "isinf.default", "isnan.default",
    "select_scatter.default", "slice_scatter.default", "index_put.default", "masked_scatter.default"})

_JSON = AttrType("JSON arguments", lambda v: isinstance(v, Mapping))
_TARGET_NAMES = AttrType("an ATen op name", lambda v: isinstance(v, str) and v in COMPUTED_TARGETS)
_LAYOUT_NAMES = AttrType("a data-movement ATen op name", lambda v: isinstance(v, str) and v in LAYOUT_TARGETS)


@dataclass(frozen=True)
class CallAttrs:
    """An ATen call replayed: its "op.overload" name, its arguments by schema name as encoded JSON (tensors as
    references to the node's inputs, sizes that follow the input as {"expr": ...}) and, for a call that returns
    several tensors, which one the node is."""

    target: Annotated[str, _TARGET_NAMES]
    args: Annotated[dict[str, Any], _JSON]
    item: Annotated[int | None, INT] = None


@dataclass(frozen=True)
class LayoutCallAttrs(CallAttrs):
    """A call that moves, copies or selects elements (relevance follows the data); `mask_over_batch`: an index by a
    boolean mask whose first dimension is the batch, which must select as many elements in every sample."""

    target: Annotated[str, _LAYOUT_NAMES]
    mask_over_batch: Annotated[bool, BOOL] = False


def encode(value: Any, inputs: list[Ref]) -> Any:
    """A call argument as JSON; tensor arguments are appended to `inputs` and written as {"input": i}."""
    if isinstance(value, Ref):
        inputs.append(value)
        return {"input": len(inputs) - 1}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device": "model"}
    if isinstance(value, torch.layout | torch.memory_format):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": str(value)}
    if isinstance(value, list | tuple):
        return [encode(v, inputs) for v in value]
    if value is None or isinstance(value, bool | int | float | str) or dims.is_expr(value):
        return value
    raise UnsupportedCallError(f"an argument of type {type(value).__name__}")


def decode(value: Any, inputs: list[torch.Tensor], device: torch.device) -> Any:
    """The call argument that `encode` wrote (size expressions already evaluated by the engine)."""
    if isinstance(value, dict):
        if "input" in value:
            return inputs[value["input"]]
        if "dtype" in value:
            return getattr(torch, value["dtype"])
        if "device" in value:
            return device
        if "float" in value:
            return float(value["float"])
    if isinstance(value, list):
        return [decode(v, inputs, device) for v in value]
    return value


def overload(target: str) -> Any:
    """The ATen overload named "op.overload"."""
    op, _, name = target.partition(".")
    return getattr(getattr(torch.ops.aten, op), name)


def _device(inputs: list[torch.Tensor], node: Node) -> torch.device:
    return inputs[0].device if inputs else torch.device(node.attrs.get("device", "cpu"))


def _copy(self: torch.Tensor, src: torch.Tensor, non_blocking: bool = False) -> torch.Tensor:
    """aten.copy (a functionalized `copy_`: src's values in self's shape and dtype), written so autograd can
    differentiate it (aten.copy has no derivative): self's values do not reach the output."""
    return src.to(self.dtype).expand_as(self) + self * 0


_DIFFERENTIABLE = {"copy.default": _copy}  # calls replayed by an equal composition autograd differentiates


def _forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    """Replay the call; a factory with no tensor input runs on the device the engine bound into attrs."""
    device, call = _device(args, node), node.typed(CallAttrs)
    kwargs = {k: decode(v, args, device) for k, v in call.args.items()}
    if node.attrs.get("mask_over_batch"):
        _check_even(kwargs["indices"][0])
    result = _DIFFERENTIABLE.get(call.target, overload(call.target))(**kwargs)
    if isinstance(result, list | tuple):  # split/chunk/unbind: one item, chosen by the capture
        assert call.item is not None, "the capture names the item of a call that returns several tensors"
        result = result[call.item]
    return result, None


DATA_ARGUMENTS = ("self", "src", "other")  # the arguments whose elements a layout call moves (not its indices, masks)


def _check_even(mask: torch.Tensor) -> None:
    """A boolean mask over the batch must select the same number of elements, at least one, in every sample."""
    counts = mask.reshape(mask.shape[0], -1).sum(dim=1)
    if bool((counts != counts[0]).any()) or int(counts[0]) == 0:
        raise UnevenSelectionError(f"a boolean mask over the batch selects {counts.tolist()} elements in its samples; "
                                   "the model needs the same number, at least one, in every sample (T5: one <eos> "
                                   "token per text)")


def _layout_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """R_in = vjp(op, R_out) for each live input: relevance goes where the data came from (token ids are moved as
    floating-point values, so that their relevance can follow them, and so are the other data arguments of the call
    then: the zeros T5's decoder ids are scattered into)."""
    moved = {value["input"] for name, value in call.node.typed(CallAttrs).args.items()
             if name in DATA_ARGUMENTS and isinstance(value, dict) and "input" in value}
    tokens = any(live and not a.is_floating_point() for a, live in zip(call.args, call.live, strict=True))
    with torch.enable_grad():
        leaves = [(a.to(call.relevance.dtype) if (live or (tokens and i in moved)) and not a.is_floating_point()
                   else a).detach().requires_grad_(live)
                  for i, (a, live) in enumerate(zip(call.args, call.live, strict=True))]
        out, _ = _forward(call.node, leaves)
        wanted = [leaf for leaf in leaves if leaf.requires_grad]
        grads = iter(torch.autograd.grad(out, wanted, call.relevance, allow_unused=True) if wanted else ())
    return [next(grads) if leaf.requires_grad else None for leaf in leaves]


def call_reader(site: Site) -> Read:
    """Any call of the table's targets: its arguments stored by name, its tensors as inputs."""
    inputs: list[Ref] = []
    args = {name: encode(value, inputs) for name, value in site.args.items()}
    return Read(inputs, {"target": site.target.removeprefix("aten."), "args": args})


def _overloads(targets: frozenset[str], reader: Reader) -> dict[Any, Reader]:
    """The overloads among `targets` that this torch has, each read by `reader`."""
    found = {}
    for target in sorted(targets):
        try:
            found[overload(target)] = reader
        except AttributeError:
            continue
    return found


LAYOUT = OpDef("layout", "transpose/permute/slice/expand/index/masked_fill (relevance follows the data)", _forward,
               _layout_back, fixed_rule="gradient", inputs=None,
               attrs=attrs_of(LayoutCallAttrs),
               aten=_overloads(LAYOUT_TARGETS, call_reader))
COMPUTED = OpDef("computed", "tensors computed from constants and sizes (position ids, masks)", _forward,
                 fixed_rule="none (depends on no explained input)", inputs=ANY_INPUTS,
                 attrs=attrs_of(CallAttrs))
CALLS = (LAYOUT, COMPUTED)
