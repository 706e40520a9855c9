"""LRP rules for Linear/Conv layers in closed form (the rule table is in docs/rules.md).

Every rule maps the relevance R of a layer's output to the relevance of its input, with
s = R / stab(z) and stab(z) = z + eps * sign(z), sign(0) = +1. When the layer's input is known to be
non-negative (it comes from a ReLU), the x- terms are zero and are skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from service.lrp.ops.affine import AffineOp
from service.lrp.params import Bound, LRPParams
from service.lrp.stabilize import divide

EPSILON = "epsilon"
ZPLUS = "zplus"
ALPHA_BETA = "alpha_beta"
GAMMA = "gamma"
ZBOX = "zbox"
WSQUARE = "wsquare"
FLAT = "flat"
RULE_NAMES = (EPSILON, ZPLUS, ALPHA_BETA, GAMMA, ZBOX, WSQUARE, FLAT)

Pair = tuple[torch.Tensor, torch.Tensor | None]


class WeightVariants:
    """The modified weights of one layer (W+, W-, gamma-weighted, squared, ones), each made once and cached."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight = weight
        self.bias = bias
        self._cache: dict[tuple[str, float], Pair] = {}
        self._lock = threading.Lock()

    def _get(self, key: tuple[str, float], make: Callable[[], Pair]) -> Pair:
        found = self._cache.get(key)
        if found is None:
            with self._lock:
                found = self._cache.get(key)
                if found is None:
                    found = make()
                    self._cache[key] = found
        return found

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Pair:
        return fn(self.weight), (fn(self.bias) if self.bias is not None else None)

    def positive(self) -> Pair:
        """(W+, b+)."""
        return self._get(("pos", 0.0), lambda: self._map(lambda t: t.clamp(min=0)))

    def negative(self) -> Pair:
        """(W-, b-)."""
        return self._get(("neg", 0.0), lambda: self._map(lambda t: t.clamp(max=0)))

    def gamma_positive(self, gamma: float) -> Pair:
        """(W + gamma W+, b + gamma b+)."""
        return self._get(("gpos", gamma), lambda: self._map(lambda t: t + gamma * t.clamp(min=0)))

    def gamma_negative(self, gamma: float) -> Pair:
        """(W + gamma W-, b + gamma b-)."""
        return self._get(("gneg", gamma), lambda: self._map(lambda t: t + gamma * t.clamp(max=0)))

    def square(self) -> Pair:
        """(W^2, b^2)."""
        return self._get(("square", 0.0), lambda: self._map(lambda t: t * t))

    def ones(self, groups: int) -> Pair:
        """All-ones weights; with groups == 1 a single output row (all rows are equal), no bias."""
        def make() -> Pair:
            shape = self.weight.shape if groups > 1 else (1, *self.weight.shape[1:])
            return torch.ones(shape, dtype=self.weight.dtype, device=self.weight.device), None
        return self._get(("ones", float(groups)), make)


@dataclass(frozen=True)
class RuleInput:
    """What a rule sees: the layer map, its input x, its output y, the output relevance and the parameters."""

    op: AffineOp
    weights: WeightVariants
    x: torch.Tensor
    y: torch.Tensor
    relevance: torch.Tensor
    params: LRPParams
    nonnegative_input: bool


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.clamp(min=0), x.clamp(max=0)


def epsilon(r: RuleInput) -> torch.Tensor:
    """z = x W^T + b; R_in = x * (s W)."""
    s = divide(r.relevance, r.y, r.params.epsilon)
    return r.x * r.op.input_vjp(s, r.weights.weight, r.x)


def zplus(r: RuleInput) -> torch.Tensor:
    """z = x+ W+ + x- W- + b+; R_in = x+ * (s W+) + x- * (s W-)."""
    (wp, bp), (wn, _) = r.weights.positive(), r.weights.negative()
    op, eps = r.op, r.params.stabilizer
    if r.nonnegative_input:
        s = divide(r.relevance, op.forward(r.x, wp, bp), eps)
        return r.x * op.input_vjp(s, wp, r.x)
    xp, xn = _split(r.x)
    s = divide(r.relevance, op.forward(xp, wp, bp) + op.forward(xn, wn), eps)
    return xp * op.input_vjp(s, wp, r.x) + xn * op.input_vjp(s, wn, r.x)


def alpha_beta(r: RuleInput) -> torch.Tensor:
    """z_a = x+W+ + x-W- + b+, z_b = x+W- + x-W+ + b-; R_in = alpha*[x+(s_a W+) + x-(s_a W-)]
    - beta*[x+(s_b W-) + x-(s_b W+)]."""
    (wp, bp), (wn, bn) = r.weights.positive(), r.weights.negative()
    op, eps, alpha, beta = r.op, r.params.stabilizer, r.params.alpha, r.params.beta
    if r.nonnegative_input:
        s_a = divide(r.relevance, op.forward(r.x, wp, bp), eps)
        back = op.input_vjp(s_a, wp, r.x).mul_(alpha)
        if beta:
            s_b = divide(r.relevance, op.forward(r.x, wn, bn), eps)
            back.sub_(op.input_vjp(s_b, wn, r.x).mul_(beta))
        return r.x * back
    xp, xn = _split(r.x)
    s_a = divide(r.relevance, op.forward(xp, wp, bp) + op.forward(xn, wn), eps)
    result = (xp * op.input_vjp(s_a, wp, r.x) + xn * op.input_vjp(s_a, wn, r.x)).mul_(alpha)
    if beta:
        s_b = divide(r.relevance, op.forward(xp, wn, bn) + op.forward(xn, wp), eps)
        result.sub_((xp * op.input_vjp(s_b, wn, r.x) + xn * op.input_vjp(s_b, wp, r.x)).mul_(beta))
    return result


def gamma(r: RuleInput) -> torch.Tensor:
    """pw = W + g W+, nw = W + g W-; zp = x+ pw + x- nw + pb, zn = x+ nw + x- pw + nb;
    sp = R/stab(zp) [y>0], sn = R/stab(zn) [y<0]; R_in = x+(sp pw) + x-(sp nw) + x+(sn nw) + x-(sn pw)."""
    (pw, pb), (nw, nb) = r.weights.gamma_positive(r.params.gamma), r.weights.gamma_negative(r.params.gamma)
    op, eps, x = r.op, r.params.stabilizer, r.x
    positive_out, negative_out = r.y > 0, r.y < 0
    if r.nonnegative_input:
        sp = divide(r.relevance, op.forward(x, pw, pb), eps).mul_(positive_out)
        sn = divide(r.relevance, op.forward(x, nw, nb), eps).mul_(negative_out)
        return x * (op.input_vjp(sp, pw, x) + op.input_vjp(sn, nw, x))
    xp, xn = _split(x)
    sp = divide(r.relevance, op.forward(xp, pw, pb) + op.forward(xn, nw), eps).mul_(positive_out)
    sn = divide(r.relevance, op.forward(xp, nw, nb) + op.forward(xn, pw), eps).mul_(negative_out)
    return (xp * (op.input_vjp(sp, pw, x) + op.input_vjp(sn, nw, x))
            + xn * (op.input_vjp(sp, nw, x) + op.input_vjp(sn, pw, x)))


def zbox(r: RuleInput) -> torch.Tensor:
    """z = x W - l W+ - h W-; R_in = x*(s W) - l*(s W+) - h*(s W-), l/h the lowest/highest input values."""
    assert r.params.low is not None and r.params.high is not None, "PreparedModel.resolve checks zbox's bounds"
    (wp, _), (wn, _) = r.weights.positive(), r.weights.negative()
    op, x, weight, bias = r.op, r.x, r.weights.weight, r.weights.bias
    low, high = _bound_like(r.params.low, x), _bound_like(r.params.high, x)
    plain = r.y if bias is None else r.y - op.per_channel(bias, r.y)
    z = plain - op.forward(low, wp) - op.forward(high, wn)
    s = divide(r.relevance, z, r.params.stabilizer)
    return x * op.input_vjp(s, weight, x) - low * op.input_vjp(s, wp, x) - high * op.input_vjp(s, wn, x)


def wsquare(r: RuleInput) -> torch.Tensor:
    """z = 1 (W^2)^T + b^2; R_in = s W^2."""
    w2, b2 = r.weights.square()
    ones = torch.ones_like(r.x[:1])
    s = divide(r.relevance, r.op.forward(ones, w2, b2), r.params.stabilizer)
    return r.op.input_vjp(s, w2, r.x)


def flat(r: RuleInput) -> torch.Tensor:
    """z = 1 1^T (no bias); R_in = s 1. With groups == 1 all weight rows are equal, so s is summed first."""
    op = r.op
    ones_weight, _ = r.weights.ones(op.groups)
    z = op.forward(torch.ones_like(r.x[:1]), ones_weight)
    s = divide(r.relevance, z, r.params.stabilizer)
    if op.groups == 1:
        s = s.sum(dim=op.channel_dim, keepdim=True)
    return op.input_vjp(s, ones_weight, r.x)


def _bound_like(bound: Bound, x: torch.Tensor) -> torch.Tensor:
    """A one-sample tensor shaped like x[:1] holding a scalar or per-channel (dim 1) bound (its length is checked
    by PreparedModel.resolve)."""
    value = torch.tensor(bound, dtype=x.dtype, device=x.device)
    if value.dim() == 1:
        value = value.view((1, -1) + (1,) * (x.dim() - 2))
    return value.expand_as(x[:1]).contiguous()


RULES: dict[str, Callable[[RuleInput], torch.Tensor]] = {
    EPSILON: epsilon, ZPLUS: zplus, ALPHA_BETA: alpha_beta, GAMMA: gamma, ZBOX: zbox, WSQUARE: wsquare, FLAT: flat,
}
