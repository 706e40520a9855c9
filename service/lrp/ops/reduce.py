"""Sums and means over dimensions, and the token embedding.

- mean / sum over dimensions: the epsilon rule, R_in = x * R / stab(sum(x)) (lxt's mean rule divides by the sum).
- Embedding: the token's relevance is the relevance reaching the embedding's output, summed over the hidden
  dimension: R_token = sum_h R_out[..., h].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F

from service.lrp.graph import Node
from service.lrp.ops.spec import (
    BOOL,
    AttrType,
    BackwardCall,
    OpDef,
    Read,
    Reader,
    Site,
    UnsupportedCallError,
    attrs_of,
    choice,
    is_int,
    normalize_dim,
)
from service.lrp.ops.structure import batch_sized
from service.lrp.stabilize import divide

aten = torch.ops.aten


_NON_NEGATIVE = AttrType("a list of non-negative ints",
                         lambda v: isinstance(v, list) and all(is_int(i) and i >= 0 for i in v))


@dataclass(frozen=True)
class ReduceAttrs:
    """mean or sum over the dimensions `dim` (the batch's never), keeping them as size 1 or not."""

    fn: Annotated[str, choice(["mean", "sum"])]
    dim: Annotated[list[int], _NON_NEGATIVE]
    keepdim: Annotated[bool, BOOL]


def _reduce(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    a = node.typed(ReduceAttrs)
    fn = torch.mean if a.fn == "mean" else torch.sum
    return fn(args[0], a.dim, keepdim=a.keepdim), None


def _reduce_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """R_in = x * R / stab(sum(x)), R broadcast back over the reduced dimensions."""
    x, a = call.args[0], call.node.typed(ReduceAttrs)
    total = x.sum(a.dim, keepdim=True)
    relevance = call.relevance if a.keepdim else call.relevance.reshape(total.shape)
    return [x * divide(relevance, total, call.stabilizer)]


def _reader(fn: str) -> Reader:
    def read(site: Site) -> Read:
        x = site.tensor("self")
        dim = site.arg("dim")
        dims = list(range(x.rank)) if not dim else [normalize_dim(int(d), x.rank) for d in dim]
        if any(batch_sized(x, d) for d in dims):
            raise UnsupportedCallError(f"{fn} over the batch dimension")
        if site.arg("dtype") is not None:
            raise UnsupportedCallError(f"{fn} with a dtype conversion")
        return Read([x], {"fn": fn, "dim": dims, "keepdim": bool(site.arg("keepdim", False))})

    return read


def _embedding(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    return F.embedding(args[0], node.params["weight"]), None


def _embedding_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """R_token = sum over the hidden dimension of R_out."""
    return [call.relevance.sum(-1)]


def _read_embedding(site: Site) -> Read:
    weight = site.parameter("weight")
    assert weight is not None, "an embedding always has a weight"
    return Read([site.tensor("indices")], {}, {"weight": weight})


REDUCE = OpDef("reduce", "mean / sum over dimensions", _reduce, _reduce_back, fixed_rule="epsilon",
               attrs=attrs_of(ReduceAttrs),
               keeps_sign=True, aten={aten.mean.dim: _reader("mean"), aten.sum.dim_IntList: _reader("sum")})
EMBEDDING = OpDef("embedding", "Embedding", _embedding, _embedding_back, fixed_rule="token relevance (sum over hidden)",
                  params=("weight",), aten={aten.embedding.default: _read_embedding})
