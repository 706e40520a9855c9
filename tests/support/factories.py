"""Module factories that the converter tests import by `tests.support.factories:NAME`, as a user's code would be."""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    """A user's model with a functional skip connection and a final softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x))) + x
        return torch.softmax(self.head(y.flatten(1)), dim=1)


def net() -> nn.Module:
    return Net()


def with_hardshrink() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.Hardshrink(), nn.Linear(4, 2))


def not_a_module() -> str:
    return "nope"
