"""Attention: softmax, the product of two activations, and scaled dot-product attention (AttnLRP, Achtibat et al.
2024; CP-LRP, Ali et al. 2022). s = R / stab(.), stab with the composite's epsilon.

- softmax (Prop. 3.1, Taylor at x with bias): R_in = x * (R - y * sum_j R_j), y = softmax(x); -inf entries count 0.
- A @ B of two activations (Prop. 3.3): S = R / stab(2 (A @ B)); R_A = A * (S @ B^T), R_B = B * (A^T @ S). With one
  of them constant (a parameter, or the attention weights under CP-LRP) it is the epsilon rule of that linear map.
- scaled_dot_product_attention: the same rules on its parts, softmax(q k^T * scale + mask) @ v; the mask absorbs
  relevance like a bias. Under CP-LRP ("cp") the attention weights are constant: only v receives relevance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

import torch
import torch.nn.functional as F

from service.lrp.graph import Node
from service.lrp.ops.spec import (
    BOOL,
    NUMBER,
    AttrType,
    BackwardCall,
    OpDef,
    Read,
    Site,
    UnsupportedCallError,
    attrs_of,
    normalize_dim,
)
from service.lrp.ops.structure import batch_sized
from service.lrp.stabilize import divide

aten = torch.ops.aten
CP = "cp"  # the composite's attention mode in which attention weights are held constant


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-1, -2)


def product_relevance(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, relevance: torch.Tensor, eps: float,
                      live: tuple[bool, bool]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The relevance of A and B in A @ B: Prop. 3.3 when both carry relevance, else the epsilon rule."""
    both = live[0] and live[1]
    s = divide(relevance, out * 2 if both else out, eps)
    r_a = (a * torch.matmul(s, _t(b)).sum_to_size(a.shape)) if live[0] else None
    r_b = (b * torch.matmul(_t(a), s).sum_to_size(b.shape)) if live[1] else None
    return r_a, r_b


def softmax_relevance(x: torch.Tensor, y: torch.Tensor, relevance: torch.Tensor, dim: int,
                      masked: bool = True) -> torch.Tensor:
    """R_in = x * (R - y * sum(R)), -inf entries of x (masks) taken as 0; `masked`: x may hold -inf."""
    if masked:
        x = x.masked_fill(torch.isneginf(x), 0)
    return x * (relevance - y * relevance.sum(dim, keepdim=True))


@dataclass(frozen=True)
class SoftmaxAttrs:
    """softmax along `dim` (never the batch's)."""

    dim: Annotated[int, AttrType("a non-negative int", lambda v: isinstance(v, int) and not isinstance(v, bool)
                                 and v >= 0)]


@dataclass(frozen=True)
class AttentionAttrs:
    """scaled_dot_product_attention's options: a causal mask, the scale (default 1 / sqrt(head size)) and grouped
    query heads (keys and values shared by several query heads)."""

    is_causal: Annotated[bool, BOOL]
    scale: Annotated[float | None, NUMBER] = None
    enable_gqa: Annotated[bool, BOOL] = False


def _softmax(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    return torch.softmax(args[0], node.typed(SoftmaxAttrs).dim), None


def _softmax_back(call: BackwardCall) -> list[torch.Tensor | None]:
    return [softmax_relevance(call.args[0], call.out, call.relevance, call.node.typed(SoftmaxAttrs).dim)]


def _read_softmax(site: Site) -> Read:
    """A softmax; one computed in another floating dtype (Gemma 2's `softmax(..., dtype=torch.float32)`) is computed
    in the prepared model's dtype, as every cast is (canonize.cast_node)."""
    x = site.tensor("self")
    dim = normalize_dim(int(site.arg("dim")), x.rank)
    if batch_sized(x, dim):
        raise UnsupportedCallError(f"softmax along dimension {dim}, which is the batch")
    dtype = site.arg("dtype")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise UnsupportedCallError(f"softmax converting to {dtype} (only to floating-point types)")
    return Read([x], {"dim": dim})


def _matmul(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    product = torch.matmul(args[0], args[1])
    return (product + args[2], product) if len(args) == 3 else (product, None)


def _matmul_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """The product rule; with an addend M (a mask: baddbmm = M + A @ B), M absorbs its share like a bias first:
    R_AB = AB * R / stab(AB + M)."""
    live = (call.live[0], call.live[1])
    product, relevance = call.out, call.relevance
    if len(call.args) == 3:
        product = call.saved_tensor()
        relevance = product * divide(relevance, call.out, call.stabilizer)
    parts = product_relevance(call.args[0], call.args[1], product, relevance, call.stabilizer, live)
    return [*parts, None] if len(call.args) == 3 else list(parts)


def _read_matmul(site: Site) -> Read:
    a, b = site.tensor("self"), site.tensor("other" if "other" in site.args else "mat2")
    if a.rank < 2 or b.rank < 2:
        raise UnsupportedCallError("matmul of a vector (use a matrix with one row or column)")
    if batch_sized(a, a.rank - 1):
        raise UnsupportedCallError("matmul that sums over the batch dimension")
    return Read([a, b])


def _read_baddbmm(site: Site) -> Read:
    """baddbmm(M, A, B) = M + A @ B (nn.MultiheadAttention adds its mask so), M carrying no relevance."""
    addend = site.tensor("self")
    if addend.live or site.arg("beta", 1) != 1 or site.arg("alpha", 1) != 1:
        raise UnsupportedCallError("baddbmm other than mask + A @ B with a mask computed from no activation")
    a, b = site.tensor("batch1"), site.tensor("batch2")
    if batch_sized(a, a.rank - 1):
        raise UnsupportedCallError("matmul that sums over the batch dimension")
    return Read([a, b, addend])


def _attention_weights(node: Node, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q k^T, scaled, the scores after the mask, softmax of the scores), k already repeated for grouped queries. A
    query whose every key is masked (a padding row under a causal mask) gets weights 0, as torch's
    scaled_dot_product_attention gives it (its "safe softmax"), not NaN."""
    raw = torch.matmul(q, _t(k))
    options = node.typed(AttentionAttrs)
    scaled = raw * (options.scale if options.scale is not None else 1 / math.sqrt(q.shape[-1]))
    scores = scaled
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else scores + mask
    if options.is_causal:
        rows, cols = scores.shape[-2:]
        causal = torch.ones(rows, cols, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~causal, -math.inf)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None or options.is_causal:
        weights = weights.masked_fill(torch.isneginf(scores).all(dim=-1, keepdim=True), 0.0)
    return raw, scaled, scores, weights


def _repeat_heads(node: Node, q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Keys and values repeated over the query heads that share them (grouped-query attention)."""
    if not node.typed(AttentionAttrs).enable_gqa or t.shape[-3] == q.shape[-3]:
        return t
    return t.repeat_interleave(q.shape[-3] // t.shape[-3], dim=-3)


def _sdpa(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    q, k, v, *rest = args
    options = node.typed(AttentionAttrs)
    out = F.scaled_dot_product_attention(q, k, v, rest[0] if rest else None, 0.0, options.is_causal,
                                         scale=options.scale, enable_gqa=options.enable_gqa)
    return out, None


class AttentionSaved(NamedTuple):
    """What attention's saving forward keeps for the backward."""

    k_full: torch.Tensor  # keys repeated over the query heads that share them
    v_full: torch.Tensor
    raw: torch.Tensor  # q k^T
    scaled: torch.Tensor
    scores: torch.Tensor  # after the mask
    weights: torch.Tensor  # softmax of the scores


def _sdpa_saving(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, object]:
    """softmax(q k^T * scale + mask) @ v written out, saving (k and v repeated for grouped queries, q k^T, the
    scaled scores, the scores after the mask, the attention weights) for the backward."""
    q, k, v, *rest = args
    k_full, v_full = _repeat_heads(node, q, k), _repeat_heads(node, q, v)
    raw, scaled, scores, weights = _attention_weights(node, q, k_full, rest[0] if rest else None)
    return torch.matmul(weights, v_full), AttentionSaved(k_full, v_full, raw, scaled, scores, weights)


def _sdpa_back(call: BackwardCall) -> list[torch.Tensor | None]:
    """v <- the product rule on weights @ v; weights <- softmax rule; scores <- the mask as a bias; q, k <- the
    product rule on q @ k^T. Under CP-LRP the weights are constant and only v receives relevance."""
    assert isinstance(call.saved, AttentionSaved), "sdpa's backward follows its saving forward"
    (q, k, v, *rest), (k_full, v_full, raw, scaled, scores, weights) = call.args, call.saved
    weights_live = call.attention != CP and (call.live[0] or call.live[1])
    r_weights, r_v = product_relevance(weights, v_full, call.out, call.relevance, call.stabilizer,
                                       (weights_live, call.live[2]))
    r_q = r_k = None
    if r_weights is not None:
        masked = bool(rest) or call.node.typed(AttentionAttrs).is_causal
        r_scores = softmax_relevance(scores, weights, r_weights, -1, masked)
        if rest and rest[0].dtype != torch.bool:
            r_scores = scaled * divide(r_scores, scores, call.stabilizer)
        r_q, r_k = product_relevance(q, _t(k_full), raw, r_scores, call.stabilizer, (call.live[0], call.live[1]))
        if r_k is not None:
            r_k = _fold_heads(_t(r_k), k)
    if r_v is not None:
        r_v = _fold_heads(r_v, v)
    return [r_q, r_k, r_v] + ([None] if rest else [])


def _fold_heads(relevance: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Relevance of repeated key/value heads summed back onto the shared head."""
    if relevance.shape == like.shape:
        return relevance
    heads = like.shape[-3]
    grouped = relevance.reshape(*relevance.shape[:-3], heads, relevance.shape[-3] // heads, *relevance.shape[-2:])
    return grouped.sum(-3)


def _read_sdpa(site: Site) -> Read:
    if site.arg("dropout_p", 0.0) != 0:
        raise UnsupportedCallError("scaled_dot_product_attention with dropout_p > 0 (call model.eval())")
    inputs = [site.tensor("query"), site.tensor("key"), site.tensor("value")]
    if site.args.get("attn_mask") is not None:
        inputs.append(site.tensor("attn_mask"))
    attrs: dict[str, Any] = {"is_causal": bool(site.arg("is_causal", False))}
    if site.arg("scale") is not None:
        attrs["scale"] = float(site.arg("scale"))
    if site.arg("enable_gqa", False):
        attrs["enable_gqa"] = True
    return Read(inputs, attrs)


SOFTMAX = OpDef("softmax", "softmax", _softmax, _softmax_back, fixed_rule="AttnLRP softmax (Taylor at x)",
                attrs=attrs_of(SoftmaxAttrs),
                aten={aten.softmax.int: _read_softmax, aten._softmax.default: _read_softmax})
MATMUL = OpDef("matmul", "A @ B (+ a mask)", _matmul, _matmul_back, fixed_rule="AttnLRP product (epsilon, halved)",
               arity=(2, 3), aten={aten.matmul.default: _read_matmul, aten.bmm.default: _read_matmul,
                                   aten.mm.default: _read_matmul, aten.baddbmm.default: _read_baddbmm})
SDPA = OpDef("sdpa", "scaled_dot_product_attention", _sdpa, _sdpa_back,
             fixed_rule="AttnLRP attention (CP-LRP: values only)", saving_forward=_sdpa_saving, arity=(3, 4),
             attrs=attrs_of(AttentionAttrs),
             aten={aten.scaled_dot_product_attention.default: _read_sdpa})
ATTENTION = (SOFTMAX, MATMUL, SDPA)
