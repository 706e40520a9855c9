"""Property 8: the same numbers as zennit 0.5.1's composites on sequential CNNs and MLPs with BatchNorm.

zennit merges BatchNorm but keeps its eps, so the models here use eps=0 (our folding is exact either way).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from service.lrp import explain
from tests.lrp.nets import randomize_batchnorm
from tests.support.zennit_oracle import load_zennit

zennit, why = load_zennit()
pytestmark = pytest.mark.skipif(zennit is None, reason=f"zennit unavailable: {why}")
LOW, HIGH = -3.0, 3.0


def _sequential_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 8, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(), nn.Linear(12, 5))
    return randomize_batchnorm(model, seed, eps=0.0).double().eval()


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 3))
    return randomize_batchnorm(model, seed, eps=0.0).double().eval()


def _zennit_composite(name: str):
    from zennit import composites
    from zennit.canonizers import SequentialMergeBatchNorm

    canonizers = [SequentialMergeBatchNorm()]
    if name == "epsilon_gamma_box":
        return composites.EpsilonGammaBox(low=LOW, high=HIGH, canonizers=canonizers)
    classes = {"epsilon_plus": composites.EpsilonPlus, "epsilon_plus_flat": composites.EpsilonPlusFlat,
               "epsilon_alpha2_beta1": composites.EpsilonAlpha2Beta1,
               "epsilon_alpha2_beta1_flat": composites.EpsilonAlpha2Beta1Flat}
    return classes[name](canonizers=canonizers)


def zennit_relevance(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, composite: str) -> torch.Tensor:
    """zennit's relevance seeded with one-hot(target) * logit."""
    from zennit.attribution import Gradient

    with Gradient(model=model, composite=_zennit_composite(composite)) as attributor:
        _, relevance = attributor(x, lambda out: torch.eye(out.shape[1], dtype=out.dtype)[targets] * out)
    return relevance


COMPOSITES = ["epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1",
              "epsilon_alpha2_beta1_flat"]


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_same_relevance_as_zennit(kind, seed, composite):
    model = _sequential_cnn(seed) if kind == "cnn" else _mlp(seed)
    shape = (3, 8, 8) if kind == "cnn" else (10,)
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(4, *shape, generator=gen, dtype=torch.float64) * (HIGH - LOW) + LOW)
    params: dict[str, Any] = {"low": LOW, "high": HIGH} if composite == "epsilon_gamma_box" else {}
    ours = explain(model, x, composite=composite, **params)
    theirs = zennit_relevance(model, x, ours.targets, composite)
    torch.testing.assert_close(ours.relevance, theirs, rtol=1e-9, atol=1e-12 * float(theirs.abs().max()))


@pytest.mark.parametrize("composite", COMPOSITES)
def test_same_relevance_as_zennit_float32(composite):
    model = _sequential_cnn(3).float()
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * (HIGH - LOW) + LOW
    params: dict[str, Any] = {"low": LOW, "high": HIGH} if composite == "epsilon_gamma_box" else {}
    ours = explain(model, x, composite=composite, **params)
    theirs = zennit_relevance(model, x, ours.targets, composite)
    for i in range(4):
        assert (ours.relevance[i] - theirs[i]).norm() / theirs[i].norm() < 1e-5
