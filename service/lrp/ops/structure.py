"""Ops that move or combine tensors: `+` (the norm rule), torch.cat, flatten and reshape (relevance follows the
data), and the calls that are no op at all (Dropout, Identity, contiguous)."""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from service.lrp.graph import Node
from service.lrp.ops.spec import INT, INT_LIST, NON_BATCH_DIM, Attr, OpDef, Site, UnsupportedCallError
from service.lrp.stabilize import divide


def pass_relevance(node: Node, args: list[torch.Tensor], out: torch.Tensor, saved: Any, relevance: torch.Tensor,
                   stabilizer: float) -> list[torch.Tensor]:
    """R_in = R_out."""
    return [relevance]


def _add_back(node: Node, args: list[torch.Tensor], out: torch.Tensor, saved: Any, relevance: torch.Tensor,
              stabilizer: float) -> list[torch.Tensor]:
    """Norm rule: R_i = x_i * R / stab(x_1 + x_2), summed back over broadcast dimensions."""
    s = divide(relevance, out, stabilizer)
    return [(arg * s).sum_to_size(arg.shape) for arg in args]


def _cat_back(node: Node, args: list[torch.Tensor], out: torch.Tensor, saved: Any, relevance: torch.Tensor,
              stabilizer: float) -> list[torch.Tensor]:
    """Each input gets its own slice of the output relevance."""
    dim = node.attrs["dim"]
    return list(torch.split(relevance, [arg.shape[dim] for arg in args], dim=dim))


def _reshape_back(node: Node, args: list[torch.Tensor], out: torch.Tensor, saved: Any, relevance: torch.Tensor,
                  stabilizer: float) -> list[torch.Tensor]:
    """The output relevance in the input's shape."""
    return [relevance.reshape(args[0].shape)]


def _add(site: Site) -> tuple[list[Any], dict[str, Any]]:
    if site.arg(2, "alpha", 1) != 1:
        raise UnsupportedCallError("torch.add with alpha != 1")
    return [site.arg(0, "input"), site.arg(1, "other")], {}


def _cat(site: Site) -> tuple[list[Any], dict[str, Any]]:
    dim = int(site.arg(1, "dim", 0))
    if dim == 0:
        raise UnsupportedCallError("torch.cat along the batch dimension")
    return list(site.arg(0, "tensors")), {"dim": dim}


def _flatten(site: Site) -> tuple[list[Any], dict[str, Any]]:
    module = site.module
    start, end = (module.start_dim, module.end_dim) if isinstance(module, nn.Flatten) else (
        site.arg(1, "start_dim", 0), site.arg(2, "end_dim", -1))
    if start == 0:
        raise UnsupportedCallError("flatten over the batch dimension (use start_dim=1)")
    return [site.arg(0, "input")], {"start_dim": int(start), "end_dim": int(end)}


BATCH = object()  # what the tracer passes for a traced `x.size(0)` / `x.shape[0]`: the batch dimension


def _reshape(site: Site) -> tuple[list[Any], dict[str, Any]]:
    rest = site.args[1:]
    shape = list(site.kwargs["shape"] if "shape" in site.kwargs else
                 rest[0] if len(rest) == 1 and isinstance(rest[0], list | tuple) else rest)
    if not shape or not (shape[0] is BATCH or shape[0] == -1) or any(not isinstance(s, int) for s in shape[1:]):
        raise UnsupportedCallError("view/reshape whose first dimension is not the batch (write x.view(x.size(0), ...))")
    if shape[0] == -1 and -1 in shape[1:]:
        raise UnsupportedCallError("view/reshape with two unknown (-1) dimensions")
    return [site.arg(0, "input")], {"shape": [int(s) for s in shape[1:]]}


ADD = OpDef("add", "tensor + tensor", lambda node, args: (args[0] + args[1], None), _add_back, fixed_rule="norm",
            inputs=2, keeps_sign=True,
            functions={operator.add: _add, operator.iadd: _add, torch.add: _add},
            methods={"add": _add, "add_": _add, "__add__": _add})
CAT = OpDef("cat", "torch.cat", lambda node, args: (torch.cat(args, dim=node.attrs["dim"]), None), _cat_back,
            fixed_rule="gradient", inputs=0, attrs=(Attr("dim", NON_BATCH_DIM),), keeps_sign=True,
            functions={torch.cat: _cat, torch.concat: _cat})
FLATTEN = OpDef("flatten", "flatten",
                lambda node, args: (args[0].flatten(node.attrs["start_dim"], node.attrs["end_dim"]), None),
                _reshape_back, fixed_rule="gradient", attrs=(Attr("start_dim", NON_BATCH_DIM), Attr("end_dim", INT)),
                keeps_sign=True, modules={nn.Flatten: _flatten}, functions={torch.flatten: _flatten},
                methods={"flatten": _flatten})
RESHAPE = OpDef("reshape", "view/reshape",
                lambda node, args: (args[0].reshape(args[0].shape[0], *node.attrs["shape"]), None),
                _reshape_back, fixed_rule="gradient", attrs=(Attr("shape", INT_LIST),), keeps_sign=True,
                methods={"view": _reshape, "reshape": _reshape})
STRUCTURE = (ADD, CAT, FLATTEN, RESHAPE)

# Calls that return their input (in eval mode): the tracer reads through them and makes no node.
IDENTITY_LABEL = "Dropout, Identity"
IDENTITY_MODULES: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
                                                 nn.Identity)
IDENTITY_FUNCTIONS: tuple[Any, ...] = (F.dropout, F.dropout1d, F.dropout2d, torch.dropout)
IDENTITY_METHODS = ("contiguous", "clone")
