"""AttnLRP rules against lxt 2.1's explicit functional ops (the AttnLRP authors' code) and their closed forms, in
float64 with a tiny epsilon so that lxt's z + e stabiliser and ours agree. Each model is one op between Linear layers
seeded with a known relevance; lxt's relevance is the input gradient of its rule Functions started from the seed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from service.lrp import PreparedModel

lxt = pytest.importorskip("lxt.explicit.functional")
EPS = 1e-12
torch.manual_seed(0)


def _lxt_relevance(forward, x: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """lxt's relevance at x: autograd through its rule Functions, started from `seed` at the output."""
    x = x.clone().requires_grad_(True)
    out = forward(x)
    out.backward(seed)
    assert x.grad is not None
    return x.grad


def _ours(model: nn.Module, x: torch.Tensor, seed: torch.Tensor, composite: str = "attnlrp") -> torch.Tensor:
    prepared = PreparedModel.from_module(model, x)
    return prepared.explain(x, composite=composite, output_relevance=seed, epsilon=EPS).relevance


class Softmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.one = nn.Parameter(torch.ones((), dtype=torch.float64))  # a parameter factor passes R whole

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1) * self.one


def test_softmax_against_lxt_and_the_closed_form():
    x = torch.randn(3, 5, dtype=torch.float64)
    seed = torch.randn(3, 5, dtype=torch.float64)
    ours = _ours(Softmax(), x, seed)
    y = torch.softmax(x, -1)
    torch.testing.assert_close(ours, x * (seed - y * seed.sum(-1, keepdim=True)))
    torch.testing.assert_close(ours, _lxt_relevance(lambda t: lxt.softmax(t, -1), x, seed))


class Product(nn.Module):
    """A @ B of two activations, both linear maps of the input."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6).double(), nn.Linear(4, 6).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.a(x) @ self.b(x).transpose(-1, -2)).flatten(1)


def test_matmul_of_two_activations_against_lxt():
    model = Product()
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    seed = torch.randn(2, 9, dtype=torch.float64)

    def reference(t: torch.Tensor) -> torch.Tensor:
        a = lxt.linear_epsilon(t, model.a.weight, model.a.bias, EPS)
        b = lxt.linear_epsilon(t, model.b.weight, model.b.bias, EPS)
        return lxt.matmul(a, b.transpose(-1, -2), epsilon=EPS).flatten(1)

    torch.testing.assert_close(_ours(model, x, seed), _lxt_relevance(reference, x, seed))


class Gate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate, self.up = nn.Linear(4, 5).double(), nn.Linear(4, 5).double()
        self.scale = nn.Parameter(torch.randn(5, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.gate(x)) * self.up(x) * self.scale


def test_gating_product_halves_and_a_parameter_factor_passes_whole():
    model = Gate()
    x = torch.randn(3, 4, dtype=torch.float64)
    seed = torch.randn(3, 5, dtype=torch.float64)

    def reference(t: torch.Tensor) -> torch.Tensor:
        gate = lxt.linear_epsilon(t, model.gate.weight, model.gate.bias, EPS)
        up = lxt.linear_epsilon(t, model.up.weight, model.up.bias, EPS)
        activated = gate + (F.silu(gate) - gate).detach()  # identity rule for SiLU
        return lxt.mul2(lxt.mul2(activated, up), model.scale.detach())

    torch.testing.assert_close(_ours(model, x, seed), _lxt_relevance(reference, x, seed))


class Norms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6).double()
        self.norm = nn.LayerNorm(6).double()
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return self.norm(h + x.mean(-1, keepdim=True))


def test_layernorm_residual_and_mean_against_lxt():
    model = Norms()
    x = torch.randn(3, 4, dtype=torch.float64)
    seed = torch.randn(3, 6, dtype=torch.float64)

    def reference(t: torch.Tensor) -> torch.Tensor:
        h = lxt.linear_epsilon(t, model.fc.weight, model.fc.bias, EPS)
        summed = lxt.add2(h, lxt.mean(t, -1, True, epsilon=EPS), epsilon=EPS)
        # lxt.layer_norm fixes its stabiliser at 1e-6; its Function takes ours
        return lxt.layer_norm_grad_fn.apply(summed, model.norm.weight, model.norm.bias, model.norm.eps, EPS)

    torch.testing.assert_close(_ours(model, x, seed), _lxt_relevance(reference, x, seed))


class HandWrittenRMSNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6).double()
        self.weight = nn.Parameter(torch.rand(6, dtype=torch.float64) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


@pytest.mark.parametrize("written", ["by hand", "nn.RMSNorm"])
def test_rmsnorm_is_the_identity_whether_written_by_hand_or_as_a_module(written):
    model = HandWrittenRMSNorm() if written == "by hand" else nn.Sequential(
        nn.Linear(4, 6).double(), nn.RMSNorm(6, eps=1e-6).double())
    fc = model.fc if written == "by hand" else model[0]
    weight = model.weight if written == "by hand" else model[1].weight
    x = torch.randn(3, 4, dtype=torch.float64)
    seed = torch.randn(3, 6, dtype=torch.float64)

    def reference(t: torch.Tensor) -> torch.Tensor:
        return lxt.rms_norm_identity(lxt.linear_epsilon(t, fc.weight, fc.bias, EPS), weight, 1e-6)

    torch.testing.assert_close(_ours(model, x, seed), _lxt_relevance(reference, x, seed))
