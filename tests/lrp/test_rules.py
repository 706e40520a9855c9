"""Property 1: each rule equals its plain-formula closed form (tests/reference.py) on Linear, Conv1d, Conv2d."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from service.lrp import PreparedModel
from service.lrp.stabilize import divide, stabilize
from tests.support import reference as ref

LAYERS = {
    "linear": (lambda bias: nn.Linear(7, 5, bias=bias), (7,)),
    "conv1d": (lambda bias: nn.Conv1d(3, 4, 3, stride=2, padding=1, bias=bias), (3, 9)),
    "conv2d": (lambda bias: nn.Conv2d(2, 3, 3, padding=1, bias=bias), (2, 5, 5)),
    "conv2d_strided_dilated": (lambda bias: nn.Conv2d(2, 4, 3, stride=2, dilation=2, padding=2, bias=bias), (2, 7, 7)),
    "conv2d_grouped": (lambda bias: nn.Conv2d(4, 6, 2, groups=2, bias=bias), (4, 4, 4)),
}
LOW, HIGH = -2.5, 3.0


def _layer(name: str, bias: bool, seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    build, shape = LAYERS[name]
    torch.manual_seed(seed)
    layer = build(bias).double()
    if bias:  # default biases are tiny; make them matter
        with torch.no_grad():
            layer.bias.normal_(0, 0.5)
    return layer, shape


def _ours(layer: nn.Module, x: torch.Tensor, relevance: torch.Tensor, rule: str, nonnegative: bool,
          **params: Any) -> torch.Tensor:
    """Our rule through the public API: [ReLU ->] layer -> Flatten, seeded with `relevance`."""
    front = [nn.ReLU()] if nonnegative else []  # a ReLU before the layer tells the engine x >= 0
    model = nn.Sequential(*front, layer, nn.Flatten())
    composite = {"base": "epsilon", "types": {"linear": rule, "conv": rule}}
    out = PreparedModel.from_module(model, x).explain(x, composite=composite, output_relevance=relevance, **params)
    return out.relevance.flatten(1)


def _reference(layer: nn.Module, shape: tuple[int, ...], x: torch.Tensor, relevance: torch.Tensor,
               rule: str) -> torch.Tensor:
    w, b = ref.dense(layer, shape)
    flat_x = x.flatten(1)
    if rule == "flat":
        return ref.flat(flat_x, ref.connections(layer, shape), relevance)
    if rule == "zbox":
        low, high = torch.full_like(flat_x[0], LOW), torch.full_like(flat_x[0], HIGH)
        return ref.zbox(flat_x, w, b, relevance, low, high)
    return getattr(ref, rule)(flat_x, w, b, relevance)


@pytest.mark.parametrize("rule", ["epsilon", "zplus", "alpha_beta", "gamma", "zbox", "wsquare", "flat"])
@pytest.mark.parametrize("layer_name", list(LAYERS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonnegative", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rule_matches_closed_form(rule, layer_name, bias, nonnegative, seed):
    layer, shape = _layer(layer_name, bias, seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, *shape, generator=gen, dtype=torch.float64) * (HIGH - LOW) + LOW
    if nonnegative:
        x = x.clamp(min=0)
    with torch.no_grad():
        out_size = layer(x).flatten(1).shape[1]
    relevance = torch.randn(3, out_size, generator=gen, dtype=torch.float64)
    params: dict[str, Any] = {"low": LOW, "high": HIGH} if rule == "zbox" else {}

    ours = _ours(layer, x, relevance, rule, nonnegative, **params)
    expected = _reference(layer, shape, x, relevance, rule)

    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-10 * float(expected.abs().max()))


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (3.0, 2.0)])
def test_alpha_beta_parameters(alpha, beta):
    layer, shape = _layer("conv2d", True, 0)
    x = torch.randn(2, *shape, dtype=torch.float64)
    relevance = torch.randn(2, 3 * 25, dtype=torch.float64)
    composite = {"base": "epsilon", "types": {"conv": "alpha_beta"}}
    model = PreparedModel.from_module(nn.Sequential(layer, nn.Flatten()), x)
    ours = model.explain(x, composite=composite, output_relevance=relevance, alpha=alpha, beta=beta).relevance
    w, b = ref.dense(layer, shape)
    expected = ref.alpha_beta(x.flatten(1), w, b, relevance, alpha=alpha, beta=beta)
    torch.testing.assert_close(ours.flatten(1), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("g", [0.0, 0.1, 1.0])
def test_gamma_parameter(g):
    layer, shape = _layer("linear", True, 1)
    x = torch.randn(4, *shape, dtype=torch.float64)
    relevance = torch.randn(4, 5, dtype=torch.float64)
    model = PreparedModel.from_module(nn.Sequential(layer), x)
    ours = model.explain(x, composite="gamma", output_relevance=relevance, gamma=g).relevance
    w, b = ref.dense(layer, shape)
    torch.testing.assert_close(ours, ref.gamma(x, w, b, relevance, g=g), rtol=1e-9, atol=1e-12)


def test_epsilon_parameter_changes_denominator():
    layer, shape = _layer("linear", True, 2)
    x = torch.randn(4, *shape, dtype=torch.float64)
    relevance = torch.randn(4, 5, dtype=torch.float64)
    model = PreparedModel.from_module(nn.Sequential(layer), x)
    ours = model.explain(x, composite="epsilon", output_relevance=relevance, epsilon=0.5).relevance
    w, b = ref.dense(layer, shape)
    torch.testing.assert_close(ours, ref.epsilon(x, w, b, relevance, eps=0.5), rtol=1e-9, atol=1e-12)


def test_per_channel_zbox_bounds():
    layer, shape = _layer("conv2d", True, 0)
    low, high = [-1.0, -2.0], [1.5, 0.5]
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(2, *shape, generator=gen, dtype=torch.float64)
    x = x * (torch.tensor(high) - torch.tensor(low)).view(1, 2, 1, 1) + torch.tensor(low).view(1, 2, 1, 1)
    relevance = torch.randn(2, 75, generator=gen, dtype=torch.float64)
    ours = _ours(layer, x, relevance, "zbox", False, low=low, high=high)
    w, b = ref.dense(layer, shape)
    low_i = torch.tensor(low, dtype=torch.float64).repeat_interleave(25)
    high_i = torch.tensor(high, dtype=torch.float64).repeat_interleave(25)
    torch.testing.assert_close(ours, ref.zbox(x.flatten(1), w, b, relevance, low_i, high_i), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rule", ["epsilon", "zplus", "gamma", "flat", "wsquare"])
def test_float32_within_1e5_of_float64_reference(rule):
    layer, shape = _layer("conv2d", True, 0)
    gen = torch.Generator().manual_seed(9)
    x = torch.rand(3, *shape, generator=gen, dtype=torch.float64)
    relevance = torch.rand(3, 75, generator=gen, dtype=torch.float64)
    expected = _reference(layer, shape, x, relevance, rule)
    ours = _ours(layer.float(), x.float(), relevance.float(), rule, True)
    error = (ours.double() - expected).abs().max() / expected.abs().max()
    assert error < 1e-5


def test_stabilizer_treats_zero_as_positive():
    z = torch.tensor([0.0, -0.0, 2.0, -2.0], dtype=torch.float64)
    assert torch.equal(stabilize(z, 0.5), torch.tensor([0.5, 0.5, 2.5, -2.5], dtype=torch.float64))


def test_stabilizer_equals_adding_or_subtracting_eps_bit_for_bit():
    z = torch.randn(4096, generator=torch.Generator().manual_seed(3))
    z[:8] = torch.tensor([0.0, -0.0] * 4)
    assert torch.equal(stabilize(z, 1e-6), torch.where(z >= 0, z + 1e-6, z - 1e-6))


def test_lrp0_division_by_zero_gives_zero():
    relevance = torch.tensor([1.0, 2.0, 3.0])
    z = torch.tensor([0.0, 4.0, -1.0])
    assert torch.equal(divide(relevance, z, 0.0), torch.tensor([0.0, 0.5, -3.0]))
