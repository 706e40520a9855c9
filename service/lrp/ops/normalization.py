"""Normalisations. BatchNorm1d/2d: preparation folds it into the Linear/Conv before it (service.lrp.canonize); one
that cannot be folded passes relevance unchanged. LayerNorm: the epsilon rule with 1/sigma constant (AttnLRP
Prop. 3.4); RMSNorm: identity. A vector norm (F.normalize's denominator) is a normalising factor, held constant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import torch
import torch.nn.functional as F

from service.lrp.graph import Node
from service.lrp.ops.spec import (
    BOOL,
    INT_LIST,
    NUMBER,
    AttrType,
    BackwardCall,
    OpDef,
    Read,
    Site,
    UnsupportedCallError,
    attrs_of,
    is_int,
    normalize_dim,
)
from service.lrp.ops.structure import batch_sized, pass_relevance
from service.lrp.stabilize import divide

aten = torch.ops.aten


_SHAPE = AttrType("a list of positive ints", lambda v: isinstance(v, list) and all(is_int(i) and i > 0 for i in v))


@dataclass(frozen=True)
class BatchNormAttrs:
    """eps added to the running variance."""

    eps: Annotated[float, NUMBER]


@dataclass(frozen=True)
class LayerNormAttrs:
    """The trailing dimensions normalised, and eps added to their variance."""

    normalized_shape: Annotated[list[int], _SHAPE]
    eps: Annotated[float, NUMBER]


@dataclass(frozen=True)
class RMSNormAttrs:
    """The trailing dimensions normalised, and eps (None: torch's default, the dtype's machine epsilon)."""

    normalized_shape: Annotated[list[int], _SHAPE]
    eps: Annotated[float | None, NUMBER] = None


@dataclass(frozen=True)
class VectorNormAttrs:
    """The `ord`-norm over the dimensions `dim`, keeping them as size 1 or not."""

    ord: Annotated[float, NUMBER]
    dim: Annotated[list[int], INT_LIST]
    keepdim: Annotated[bool, BOOL]


def _forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    p = node.params
    return F.batch_norm(args[0], p["running_mean"], p["running_var"], p.get("weight"), p.get("bias"),
                        training=False, eps=node.typed(BatchNormAttrs).eps), None


def _batchnorm(site: Site) -> Read:
    if site.arg("training", False):
        raise UnsupportedCallError("BatchNorm in training mode (it would normalise with the batch's statistics): "
                                   "call model.eval() before explaining")
    params = {name: site.parameter(name) for name in ("running_mean", "running_var", "weight", "bias")}
    if params["running_mean"] is None or params["running_var"] is None:
        raise UnsupportedCallError("BatchNorm without running statistics (track_running_stats=False)")
    return Read([site.tensor("input")], {"eps": float(site.arg("eps", 1e-5))},
                {name: value for name, value in params.items() if value is not None})


BATCHNORM = OpDef("batchnorm", "BatchNorm1d/2d", _forward, pass_relevance, fixed_rule="pass",
                  attrs=attrs_of(BatchNormAttrs), params=("running_mean", "running_var"),
                  optional_params=("weight", "bias"), aten={aten.batch_norm.default: _batchnorm})


def _layer_norm(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    """The output, saving 1/sigma (native_layer_norm computes it anyway)."""
    p, a = node.params, node.typed(LayerNormAttrs)
    out, _, inverse_sigma = torch.native_layer_norm(args[0], a.normalized_shape, p.get("weight"), p.get("bias"), a.eps)
    return out, inverse_sigma


def _layer_norm_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """AttnLRP Prop. 3.4: sigma held constant, the epsilon rule on y = (x - mean(x)) / sigma * w + b:
    g = w * R / stab(y) / sigma; R_in = x * (g - mean(g)), the means over the normalised dimensions."""
    x, node = call.args[0], call.node
    reduced = tuple(range(x.dim() - len(node.typed(LayerNormAttrs).normalized_shape), x.dim()))
    g = divide(call.relevance, call.out, call.stabilizer).mul_(call.saved_tensor())
    weight = node.params.get("weight")
    if weight is not None:
        g = g.mul_(weight)
    return [x * (g - g.mean(reduced, keepdim=True))]


def _read_layer_norm(site: Site) -> Read:
    params = {name: site.parameter(name) for name in ("weight", "bias")}
    return Read([site.tensor("input")], {"normalized_shape": [int(n) for n in site.arg("normalized_shape")],
                                         "eps": float(site.arg("eps", 1e-5))},
                {name: value for name, value in params.items() if value is not None})


def _rms_norm(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    a = node.typed(RMSNormAttrs)
    return F.rms_norm(args[0], a.normalized_shape, node.params.get("weight"), a.eps), None


def _read_rms_norm(site: Site) -> Read:
    weight = site.parameter("weight")
    attrs: dict[str, Any] = {"normalized_shape": [int(n) for n in site.arg("normalized_shape")]}
    if site.arg("eps") is not None:
        attrs["eps"] = float(site.arg("eps"))
    return Read([site.tensor("input")], attrs, {"weight": weight} if weight is not None else {})


def _vector_norm(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    a = node.typed(VectorNormAttrs)
    return torch.linalg.vector_norm(args[0], a.ord, a.dim, a.keepdim), None


def _read_vector_norm(site: Site) -> Read:
    x = site.tensor("self")
    dim = site.arg("dim")
    if dim is None or any(batch_sized(x, normalize_dim(int(d), x.rank)) for d in dim):
        raise UnsupportedCallError("a vector norm over the batch dimension")
    if site.arg("dtype") is not None:
        raise UnsupportedCallError("a vector norm with a dtype conversion")
    return Read([x], {"ord": float(site.arg("ord", 2)), "dim": [normalize_dim(int(d), x.rank) for d in dim],
                      "keepdim": bool(site.arg("keepdim", False))})


def _normalizer_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """A normalising factor is held constant where it scales an activation, so relevance never reaches it."""
    raise AssertionError("the engine never sends relevance into a normalising factor")


LAYERNORM = OpDef("layernorm", "LayerNorm", _layer_norm, _layer_norm_back,
                  fixed_rule="AttnLRP LayerNorm (epsilon, 1/sigma constant)",
                  attrs=attrs_of(LayerNormAttrs), optional_params=("weight", "bias"),
                  aten={aten.layer_norm.default: _read_layer_norm})
RMSNORM = OpDef("rmsnorm", "RMSNorm", _rms_norm, pass_relevance, fixed_rule="identity",
                attrs=attrs_of(RMSNormAttrs),
                optional_params=("weight",), aten={aten.rms_norm.default: _read_rms_norm})
VECTOR_NORM = OpDef("vector_norm", "vector norm (a normalising factor, F.normalize)", _vector_norm, _normalizer_back,
                    fixed_rule="held constant (a normalising factor)",
                    attrs=attrs_of(VectorNormAttrs),
                    aten={aten.linalg_vector_norm.default: _read_vector_norm})
NORMALIZATION = (BATCHNORM, LAYERNORM, RMSNORM, VECTOR_NORM)
