"""Small networks covering the graph shapes the engine must handle, in float64 with random BN statistics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from service.lrp import Node, PreparedModel


def randomize_batchnorm(model: nn.Module, seed: int = 0, eps: float | None = None,
                        bias_free: bool = False) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters (optionally a new eps);
    `bias_free` zeroes the running mean and shift, so that folding adds no bias."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.randn(n, generator=gen))
                module.bias.copy_(torch.randn(n, generator=gen) * 0.3)
                if bias_free:
                    module.running_mean.zero_()
                    module.bias.zero_()
                if eps is not None:
                    module.eps = eps
    return model


M = TypeVar("M", bound=nn.Module)


def _finish(model: M, seed: int, bias: bool = True) -> M:
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            module.reset_parameters()
    randomize_batchnorm(model, seed, bias_free=not bias)
    return model.double().eval()


def mlp(bias: bool = True, batchnorm: bool = False, seed: int = 0) -> nn.Sequential:
    """Linear-ReLU-Linear-ReLU-Linear on 6 features, 4 classes."""
    norm = [nn.BatchNorm1d(12)] if batchnorm else []
    return _finish(nn.Sequential(nn.Linear(6, 12, bias=bias), *norm, nn.ReLU(), nn.Dropout(0.5),
                                 nn.Linear(12, 10, bias=bias), nn.ReLU(), nn.Linear(10, 4, bias=bias)), seed, bias)


def cnn(bias: bool = True, batchnorm: bool = False, seed: int = 0) -> nn.Sequential:
    """Conv-(BN)-ReLU-MaxPool-Conv-ReLU-AvgPool-Flatten-Linear on 2x10x10, 5 classes."""
    norm = [nn.BatchNorm2d(4)] if batchnorm else []
    return _finish(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=bias), *norm, nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, bias=bias), nn.ReLU(), nn.AvgPool2d(3), nn.Flatten(),
        nn.Linear(6, 8, bias=bias), nn.ReLU(), nn.Linear(8, 5, bias=bias)), seed, bias)


def cnn1d(bias: bool = True, seed: int = 0) -> nn.Sequential:
    """Conv1d-ReLU-MaxPool1d-Conv1d-ReLU-AdaptiveAvgPool1d-Flatten-Linear on 3x16, 4 classes."""
    return _finish(nn.Sequential(
        nn.Conv1d(3, 5, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(5, 6, 3, stride=2, bias=bias),
        nn.ReLU(), nn.AdaptiveAvgPool1d(2), nn.Flatten(), nn.Linear(12, 4, bias=bias)), seed, bias)


class Residual(nn.Module):
    """Conv-BN-ReLU, a residual block with BatchNorm and a functional `+` skip, global pooling, Linear."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=bias)
        self.stem_bn = nn.BatchNorm2d(4)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = F.relu(x + y)
        return self.fc(torch.flatten(self.pool(x), 1))


class Concat(nn.Module):
    """Two convolution branches joined by torch.cat, a view(x.size(0), -1), then Linear."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.left = nn.Conv2d(2, 3, 3, padding=1, bias=bias)
        self.right = nn.Conv2d(2, 2, 1, bias=bias)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(5 * 4 * 4, 4, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([F.relu(self.left(x)), F.relu(self.right(x))], dim=1)
        pooled = self.pool(joined)
        return self.fc(pooled.view(pooled.size(0), -1))


class Twice(nn.Module):
    """One Linear module called twice in one forward."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.inp = nn.Linear(5, 8, bias=bias)
        self.shared = nn.Linear(8, 8, bias=bias)
        self.head = nn.Linear(8, 3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp(x))
        h = F.relu(self.shared(h))
        h = F.relu(self.shared(h))
        return self.head(h)


def residual(bias: bool = True, seed: int = 0) -> nn.Module:
    return _finish(Residual(bias), seed, bias)


def concat(bias: bool = True, seed: int = 0) -> nn.Module:
    return _finish(Concat(bias), seed, bias)


def twice(bias: bool = True, seed: int = 0) -> nn.Module:
    return _finish(Twice(bias), seed, bias)


# name -> (builder, input shape of one sample)
NETS: dict[str, tuple[Callable[..., nn.Module], tuple[int, ...]]] = {
    "mlp": (mlp, (6,)),
    "cnn": (cnn, (2, 10, 10)),
    "cnn_bn": (lambda bias=True, seed=0: cnn(bias, batchnorm=True, seed=seed), (2, 10, 10)),
    "cnn1d": (cnn1d, (3, 16)),
    "residual": (residual, (1, 8, 8)),
    "concat": (concat, (2, 8, 8)),
    "twice": (twice, (5,)),
}


def batch(shape: tuple[int, ...], n: int = 4, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A reproducible random batch."""
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed + 100), dtype=dtype)


def weighted_layers(prepared: PreparedModel) -> list[Node]:
    """The Linear and Conv nodes of a prepared model, in execution order (the layers composites give rules to)."""
    return [node for node in prepared.graph.nodes if node.op in ("linear", "conv1d", "conv2d")]
