"""What the engine hands back: the resolved method of an explanation and its result."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from service.lrp import composites
from service.lrp.params import LRPParams


@dataclass(frozen=True)
class Method:
    """How to explain: a resolved composite and checked parameters (hashable, so it can key a batch)."""

    composite: composites.Composite
    params: LRPParams


@dataclass(frozen=True)
class Explanation:
    """Relevance (shaped like the input), the explained logits, the classes each sample explains (a 0/1 mask
    [batch, classes]: one class, or several explained together) and the model's final activation."""

    relevance: torch.Tensor
    logits: torch.Tensor
    selected: torch.Tensor
    output_activation: str = "logits"
    layers: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def targets(self) -> torch.Tensor:
        """Each sample's (first) explained class."""
        return self.selected.argmax(dim=1)

    @property
    def output(self) -> torch.Tensor:
        """The model's output: the logits after the final activation that preparation stripped (computed here)."""
        return output_from_logits(self.logits, self.output_activation)

    @property
    def target_logits(self) -> torch.Tensor:
        """The sum of each sample's selected logits (its target class's logit): the relevance the backward pass
        starts from."""
        return torch.where(self.selected.bool(), self.logits, 0.0).sum(dim=1)

    @property
    def relevance_sum(self) -> torch.Tensor:
        """Sum of the input relevance of each sample."""
        return self.relevance.flatten(1).sum(1)

    @property
    def conservation_delta(self) -> torch.Tensor:
        """The selected logits' sum - sum(R): zero only for conservative rules on bias-free models."""
        return self.target_logits - self.relevance_sum


def output_from_logits(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Apply a model's final activation (`logits`: none) to its logits."""
    if activation == "softmax":
        return logits.softmax(dim=-1)
    if activation == "log_softmax":
        return logits.log_softmax(dim=-1)
    if activation == "sigmoid":
        return logits.sigmoid()
    return logits
