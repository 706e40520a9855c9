"""Region perturbation: the curves against Quantus's PixelFlipping on the same model, input, relevance and baseline,
and the orders, steps and AOPC against their definitions."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from service.faithfulness.scheme import aopc, curves, orders, perturbed
from service.lrp import PreparedModel


def _quantus() -> Any:
    """Quantus, imported with zennit hidden (quantus imports it when present, and zennit needs torchvision)."""
    real = importlib.util.find_spec

    def without_zennit(name: str, *args: Any) -> Any:
        return None if name.split(".")[0] == "zennit" else real(name, *args)

    importlib.util.find_spec = without_zennit  # type: ignore[assignment]
    try:
        return importlib.import_module("quantus")
    except ImportError:
        pytest.skip("quantus is not installed")
    finally:
        importlib.util.find_spec = real


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()


def test_orders_break_ties_by_the_lower_index_and_random_orders_are_seeded():
    relevance = np.array([0.5, 2.0, 0.5, -1.0, 2.0])
    morf, lerf, first, again = orders(relevance, 1) + orders(relevance, 1)[2:]
    assert morf.tolist() == [1, 4, 0, 2, 3] and lerf.tolist() == [3, 0, 2, 1, 4]
    assert first.tolist() == again.tolist() == np.random.default_rng(0).permutation(5).tolist()


def test_each_step_removes_the_next_features_of_the_order_with_channels_together():
    x = torch.arange(2 * 2 * 2, dtype=torch.float32).reshape(2, 2, 2) + 1  # 2 channels, 2x2 pixels
    features = torch.arange(4).reshape(1, 2, 2).expand(2, 2, 2)  # a pixel's channels are one feature
    copies = perturbed(x, features, torch.zeros_like(x), np.array([3, 0, 2, 1]), steps=2, per_step=2)
    assert copies[0].tolist() == [[[0, 2], [3, 0]], [[0, 6], [7, 0]]]
    assert copies[1].tolist() == [[[0, 0], [0, 0]], [[0, 0], [0, 0]]]


def test_elements_that_are_no_feature_survive_steps_past_the_last_feature():
    x = torch.tensor([5.0, 6.0, 7.0])
    copies = perturbed(x, torch.tensor([-1, 0, 1]), torch.zeros(3), np.array([1, 0]), steps=3, per_step=1)
    assert copies.tolist() == [[5, 6, 0], [5, 0, 0], [5, 0, 0]]


def test_aopc_is_the_mean_drop_over_steps_zero_to_k():
    assert aopc([4.0, 3.0, 1.0, 0.0]) == pytest.approx((0 + 1 + 3 + 4) / 4)


@pytest.mark.slow
@pytest.mark.parametrize("per_step", [1, 8])
def test_the_morf_and_lerf_curves_equal_quantus_pixel_flipping(per_step):
    quantus = _quantus()
    module = _cnn()
    prepared = PreparedModel.from_module(module, torch.zeros(2, 1, 8, 8))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    relevance = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)  # distinct values: no ties to break
    targets = np.array([0, 3, 4])
    baseline = -0.5
    steps = int(np.ceil(64 / per_step))
    for sign, name in ((1, "morf"), (-1, "lerf")):
        metric = quantus.PixelFlipping(features_in_step=per_step, perturb_baseline=baseline, normalise=False,
                                       abs=False, disable_warnings=True)
        theirs = metric(model=module, x_batch=x, y_batch=targets, a_batch=sign * relevance, softmax=False,
                        channel_first=True, device="cpu")
        for i in range(3):
            ours = curves(prepared.predict, torch.from_numpy(x[i]), torch.arange(64).reshape(1, 8, 8),
                          relevance[i].reshape(-1), int(targets[i]), torch.full((1, 8, 8), baseline), steps,
                          per_step, seeds=0)
            chosen = ours.morf if name == "morf" else ours.lerf
            np.testing.assert_allclose(chosen[1:], np.asarray(theirs[i]).reshape(-1), rtol=1e-5, atol=1e-5)


def test_the_random_curve_averages_the_seeded_orders():
    module = _cnn()
    prepared = PreparedModel.from_module(module, torch.zeros(2, 1, 8, 8))
    x = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(2))
    features = torch.arange(64).reshape(1, 8, 8)
    relevance = np.random.default_rng(3).normal(size=64)
    found = curves(prepared.predict, x, features, relevance, 2, torch.zeros(1, 8, 8), 4, seeds=3)
    expected = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(64)
        batch = perturbed(x, features, torch.zeros(1, 8, 8), order, 4, 16)
        expected.append(module(batch)[:, 2].tolist())
    np.testing.assert_allclose(found.random[1:], np.mean(expected, axis=0), rtol=1e-5, atol=1e-6)
    assert found.random[0] == found.morf[0] == found.lerf[0]
    with torch.no_grad():
        assert found.morf[-1] == pytest.approx(module(torch.zeros(1, 1, 8, 8))[0, 2].item(), abs=1e-5)
