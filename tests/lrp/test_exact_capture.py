"""Captured models compute exactly what the model computes, or are refused naming the operation: the patterns that
the fx tracer accepted and explained wrongly (alpha, in-place ops, a stale cache, tanh, cat and view on the batch)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from service.lrp import LRPError, UnsupportedLayerError, explain, prepare

torch.manual_seed(0)


def _gradient_x_input(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    model(x).gather(1, target[:, None]).sum().backward()
    assert x.grad is not None
    return (x.grad * x).detach()


def _check_exact(model: nn.Module, x: torch.Tensor) -> None:
    """The engine's logits are the model's, and LRP-0 equals gradient x input (ReLU nets, no bias)."""
    result = explain(model, x, composite="epsilon", epsilon=0.0, stabilizer=0.0)
    torch.testing.assert_close(result.logits, model(x).detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.relevance, _gradient_x_input(model, x, result.targets), rtol=1e-9, atol=1e-12)


class AddAlpha(nn.Module):
    def __init__(self, method: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6, bias=False), nn.Linear(4, 6, bias=False)
        self.head = nn.Linear(6, 3, bias=False)
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = F.relu(self.a(x)), F.relu(self.b(x))
        summed = a.add(b, alpha=2) if self.method else torch.add(a, b, alpha=-0.5)
        return self.head(summed)


@pytest.mark.parametrize("method", [True, False])
def test_add_with_alpha_is_computed_and_explained_exactly(method):
    _check_exact(AddAlpha(method).double(), torch.randn(5, 4, dtype=torch.float64))


class InPlaceSkip(nn.Module):
    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.fc1, self.fc2, self.head = (nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False),
                                         nn.Linear(4, 3, bias=False))
        self.act = nn.ReLU(inplace=True)
        self.functional = functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc1(x)
        z = self.fc2(x)
        activated = F.relu(y, inplace=True) if self.functional else self.act(y)
        return self.head(activated + y + z)  # y was changed in place: it is the activated tensor


@pytest.mark.parametrize("functional", [True, False])
def test_in_place_activations_whose_input_is_read_again(functional):
    _check_exact(InPlaceSkip(functional).double(), torch.randn(5, 4, dtype=torch.float64))


class OnView(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4, bias=False)
        self.head = nn.Linear(4, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        F.relu(y[:, :2], inplace=True)  # changes y's first two columns only
        return self.head(y)


def test_an_in_place_op_on_a_view_is_captured_as_torch_functionalizes_it_and_explained_exactly():
    _check_exact(OnView().double(), torch.randn(5, 4, dtype=torch.float64))


def test_the_prepared_model_follows_changes_to_modules_not_only_to_weights():
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)).double().eval()
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 4, dtype=torch.float64)
    explain(model, x)
    model[2] = nn.Tanh()
    torch.testing.assert_close(explain(model, x).logits, model(x).detach())
    model[1].eps = 0.5  # type: ignore[assignment]
    torch.testing.assert_close(explain(model, x).logits, model(x).detach())


def test_tanh_in_a_plain_mlp():
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    result = explain(model, x, composite="epsilon")
    torch.testing.assert_close(result.logits, model(x).detach())
    assert torch.isfinite(result.relevance).all()


class Cat(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc, self.dim = nn.Linear(4, 3), dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([x, x], dim=self.dim)[: x.shape[0]])


@pytest.mark.parametrize("dim", [0, -2])
def test_cat_along_the_batch_is_refused_however_the_dimension_is_written(dim):
    with pytest.raises(UnsupportedLayerError, match=r"torch\.cat along dimension 0, which is the batch"):
        prepare(Cat(dim), torch.randn(2, 4))


def test_cat_along_features_with_a_negative_dimension_is_exact():
    class Features(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 3, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.cat([F.relu(x), x], dim=-1))

    _check_exact(Features().double(), torch.randn(4, 4, dtype=torch.float64))


@pytest.mark.parametrize("shape,message", [((-1, 4), "not the batch: a reshape mixes samples"),
                                           ((4, -1), "works for one batch size only")])
def test_a_view_that_mixes_samples_is_refused_at_preparation(shape, message):
    class Mixing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.view(*shape))

    with pytest.raises(LRPError, match=message):
        prepare(Mixing(), torch.randn(2, 8))


def test_a_view_that_splits_and_restores_the_batch_is_exact():
    class RoundTrip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 3, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(F.relu(x.view(-1, 4)).view(x.size(0), 8))

    _check_exact(RoundTrip().double(), torch.randn(4, 8, dtype=torch.float64))
