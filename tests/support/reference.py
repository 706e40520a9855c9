"""Plain-formula LRP oracle: every rule of docs/rules.md written over explicit connections z_ij.

A layer is given as a dense matrix W (inputs I x outputs J, built by probing the layer with unit vectors,
so convolutions become their plain matrix) and a bias b (J). Inputs x are (N, I), relevance R is (N, J).
Nothing here shares code with service/lrp.
"""

from __future__ import annotations

import torch
from torch import nn


def dense(layer: nn.Module, in_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) with layer(x) = x.flatten() @ W + b for one sample of shape `in_shape`."""
    size = int(torch.tensor(in_shape).prod())
    dtype = next(layer.parameters()).dtype
    basis = torch.eye(size, dtype=dtype).reshape(size, *in_shape)
    zero = torch.zeros(1, *in_shape, dtype=dtype)
    with torch.no_grad():
        bias = layer(zero).flatten()
        weight = layer(basis).reshape(size, -1) - bias
    return weight, bias


def connections(layer: nn.Module, in_shape: tuple[int, ...]) -> torch.Tensor:
    """1 where input i is connected to output j (the layer's weights all set to one), else 0."""
    probe = type(layer)(**_constructor_args(layer)).to(next(layer.parameters()).dtype)
    with torch.no_grad():
        for param in probe.parameters():
            param.fill_(1.0)
        if getattr(probe, "bias", None) is not None:
            probe.bias.zero_()
    weight, _ = dense(probe, in_shape)
    return (weight != 0).to(weight.dtype)


def _constructor_args(layer: nn.Module) -> dict:
    if isinstance(layer, nn.Linear):
        return {"in_features": layer.in_features, "out_features": layer.out_features, "bias": False}
    assert isinstance(layer, nn.Conv1d | nn.Conv2d)
    return {"in_channels": layer.in_channels, "out_channels": layer.out_channels,
            "kernel_size": layer.kernel_size, "stride": layer.stride, "padding": layer.padding,
            "dilation": layer.dilation, "groups": layer.groups, "bias": False}


def stab(z: torch.Tensor, eps: float) -> torch.Tensor:
    """z + eps * sign(z), sign(0) = +1."""
    sign = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
    return z + eps * sign


def _redistribute(contrib: torch.Tensor, denom: torch.Tensor, relevance: torch.Tensor, eps: float) -> torch.Tensor:
    """R_i = sum_j contrib_ij / stab(denom_j) * R_j, with contrib (N, I, J), denom and R (N, J)."""
    return (contrib / stab(denom, eps)[:, None, :] * relevance[:, None, :]).sum(dim=2)


def pos(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


def neg(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(max=0)


def epsilon(x, w, b, relevance, eps=1e-6):
    contrib = x[:, :, None] * w[None]
    return _redistribute(contrib, contrib.sum(1) + b, relevance, eps)


def zplus(x, w, b, relevance, eps=1e-6):
    contrib = pos(x)[:, :, None] * pos(w)[None] + neg(x)[:, :, None] * neg(w)[None]
    return _redistribute(contrib, contrib.sum(1) + pos(b), relevance, eps)


def alpha_beta(x, w, b, relevance, alpha=2.0, beta=1.0, eps=1e-6):
    activating = pos(x)[:, :, None] * pos(w)[None] + neg(x)[:, :, None] * neg(w)[None]
    inhibiting = pos(x)[:, :, None] * neg(w)[None] + neg(x)[:, :, None] * pos(w)[None]
    return (alpha * _redistribute(activating, activating.sum(1) + pos(b), relevance, eps)
            - beta * _redistribute(inhibiting, inhibiting.sum(1) + neg(b), relevance, eps))


def gamma(x, w, b, relevance, g=0.25, eps=1e-6):
    pw, nw = w + g * pos(w), w + g * neg(w)
    pb, nb = b + g * pos(b), b + g * neg(b)
    y = x @ w + b
    zp = pos(x)[:, :, None] * pw[None] + neg(x)[:, :, None] * nw[None]
    zn = pos(x)[:, :, None] * nw[None] + neg(x)[:, :, None] * pw[None]
    return (_redistribute(zp, zp.sum(1) + pb, relevance * (y > 0), eps)
            + _redistribute(zn, zn.sum(1) + nb, relevance * (y < 0), eps))


def zbox(x, w, b, relevance, low, high, eps=1e-6):
    """low/high: (I,) per input."""
    contrib = x[:, :, None] * w[None] - low[None, :, None] * pos(w)[None] - high[None, :, None] * neg(w)[None]
    return _redistribute(contrib, contrib.sum(1), relevance, eps)


def wsquare(x, w, b, relevance, eps=1e-6):
    contrib = (w * w)[None].expand(x.shape[0], -1, -1)
    return _redistribute(contrib, contrib.sum(1) + b * b, relevance, eps)


def flat(x, connected, relevance, eps=1e-6):
    contrib = connected[None].expand(x.shape[0], -1, -1)
    return _redistribute(contrib, contrib.sum(1), relevance, eps)
