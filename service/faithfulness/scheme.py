"""Region perturbation (pixel flipping; Samek et al. 2017): how fast the target logit falls when the most relevant
features are removed first, against the least relevant first and a random order.

The scheme, so that a served curve can be recomputed from /predict alone:
- features: one per input element, except that an image's channels at one pixel form one feature (relevance summed
  over channels) and a text's special tokens are never removed;
- order: most relevant first (MoRF: relevance descending), least relevant first (LeRF: ascending), ties broken by the
  lower feature index; random: permutations of the features by numpy's default_rng(seed), seeds 0..n-1;
- step j (1..k) removes the first j * m features of the order (m features per step, default ceil(F / k)) by setting
  them to the baseline: the model's baseline value (default the middle of its input range), a tabular model's
  training mean, a text model's mask token (else its pad token);
- curve: f_0 = f(x), the target logit, then f_j after step j; AOPC = mean over j = 0..k of f_0 - f_j.
The perturbed copies of the instances (MoRF, LeRF and every random order) go through the model together, in passes
of as many inputs as one batched pass of the model takes (service.faithfulness.subject).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from service.manifest.model_json import InputSpec
from service.modality.instances import model_space_bounds
from service.modality.text import TextModel

Predict = Callable[[torch.Tensor], torch.Tensor]  # a batch -> its logits [batch, classes]


@dataclass(frozen=True)
class Curves:
    """The target logit after each step (index 0: unperturbed) in each order, and their AOPCs."""

    morf: list[float]
    lerf: list[float]
    random: list[float]  # the mean over the random orders

    @property
    def aopc_morf(self) -> float:
        return aopc(self.morf)

    @property
    def aopc_lerf(self) -> float:
        return aopc(self.lerf)

    @property
    def aopc_random(self) -> float:
        return aopc(self.random)


def aopc(curve: Sequence[float]) -> float:
    """Area over the perturbation curve: the mean over steps 0..k of f_0 - f_j."""
    return float(np.mean([curve[0] - value for value in curve]))


def orders(relevance: np.ndarray, seeds: int) -> list[np.ndarray]:
    """Feature indices most relevant first, least relevant first, then `seeds` random permutations."""
    count = len(relevance)
    morf = np.lexsort((np.arange(count), -relevance))
    lerf = np.lexsort((np.arange(count), relevance))
    shuffled = [np.random.default_rng(seed).permutation(count) for seed in range(seeds)]
    return [morf, lerf, *shuffled]


def perturbed(x: torch.Tensor, features: torch.Tensor, baseline: torch.Tensor, order: np.ndarray, steps: int,
              per_step: int) -> torch.Tensor:
    """The k copies of x with the first j * per_step features of `order` set to the baseline (j = 1..k).
    `features` maps each element of x to its feature index (-1: never removed)."""
    never = torch.iinfo(torch.long).max  # an element that is no feature outlasts every step
    rank = torch.full((max(int(features.max()) + 1, 1),), never, dtype=torch.long)
    rank[torch.as_tensor(order, dtype=torch.long)] = torch.arange(len(order))
    element_rank = torch.where(features >= 0, rank[features.clamp(min=0)], torch.full_like(features, never))
    removed = torch.stack([element_rank < j * per_step for j in range(1, steps + 1)])
    return torch.where(removed, baseline.expand_as(removed), x.expand_as(removed))


def plan(x: torch.Tensor, features: torch.Tensor, relevance: np.ndarray, baseline: torch.Tensor, steps: int,
         per_step: int | None = None, seeds: int = 3) -> torch.Tensor:
    """The copies of x to run, in order: x itself, then k perturbed copies for MoRF, LeRF and each random order."""
    per_step = per_step or math.ceil(len(relevance) / steps)
    copies = [perturbed(x, features, baseline, order, steps, per_step) for order in orders(relevance, seeds)]
    return torch.cat([x[None], *copies])


def copies(instances: int, steps: int, seeds: int) -> int:
    """How many inputs `plan` makes for `instances` instances: each itself, then k copies per order."""
    return instances * (1 + steps * (2 + seeds))


def read(logits: Sequence[float], steps: int, seeds: int = 3) -> Curves:
    """The curves from the target logits of `plan`'s copies."""
    first, rest = logits[0], list(logits[1:])
    series = [[first, *rest[i * steps:(i + 1) * steps]] for i in range(2 + seeds)]
    random = np.mean(np.asarray(series[2:]), axis=0).tolist() if seeds else [first] * (steps + 1)
    return Curves(series[0], series[1], random)


def curves(predict: Predict, x: torch.Tensor, features: torch.Tensor, relevance: np.ndarray, target: int,
           baseline: torch.Tensor, steps: int, per_step: int | None = None, seeds: int = 3) -> Curves:
    """The perturbation curves of one instance x (model space) for its target class, from its feature relevance."""
    copies = plan(x, features, relevance, baseline, steps, per_step, seeds)
    return read(predict(copies)[:, target].tolist(), steps, seeds)


def features(spec: InputSpec, text: TextModel | None, x: torch.Tensor) -> torch.Tensor:
    """Each element's feature index: an image's channels at one pixel share one; a text's special tokens are -1 and
    its other tokens numbered in order."""
    if text is not None:
        special = torch.tensor([int(i) in text.special_ids for i in x.tolist()], dtype=torch.bool)
        index = torch.cumsum((~special).long(), 0) - 1
        return torch.where(special, torch.full_like(index, -1), index)
    if spec.kind == "image":
        channels, height, width = x.shape
        return torch.arange(height * width).reshape(1, height, width).expand(channels, height, width)
    return torch.arange(x.numel()).reshape(x.shape)


def feature_relevance(index: torch.Tensor, relevance: np.ndarray) -> np.ndarray:
    """The relevance of each feature: the sum over its elements."""
    flat, values = index.reshape(-1).numpy(), np.asarray(relevance, dtype=np.float64).reshape(-1)
    keep = flat >= 0
    return np.bincount(flat[keep], weights=values[keep], minlength=int(flat.max()) + 1 if keep.any() else 0)


def baseline(spec: InputSpec, text: TextModel | None, x: torch.Tensor) -> torch.Tensor:
    """What a removed feature becomes, in model space: the middle of the input range (a tabular model's training
    mean: 0 once standardised), a text model's mask token; 0 for a model without a range."""
    if text is not None:
        return torch.full_like(x, text.mask_id)
    if spec.kind == "tabular" and spec.standardization is not None:
        return torch.zeros_like(x)
    bounds = model_space_bounds(spec)
    if bounds is None:
        return torch.zeros_like(x)
    low, high = (np.asarray(b, dtype=np.float64) for b in bounds)
    middle = torch.as_tensor((low + high) / 2, dtype=x.dtype)
    if spec.kind == "image" and middle.dim() == 1:
        middle = middle[:, None, None]
    return middle.expand_as(x).clone()
