"""Faithfulness of explanations served with `"evaluate"` (service.faithfulness has the scheme): each input kind's
features and baseline, and one pass over every perturbed copy of a batch's evaluated samples. Runs on the device
thread, after the explanation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from service import faithfulness
from service.inputs import model_space_bounds
from service.schemas import Faithfulness, InstanceExplanation
from service.store.registry import ModelEntry


@dataclass(frozen=True)
class Evaluation:
    """What a request asks: k steps, m features per step (None: ceil(F / k)) and how many random orders."""

    steps: int
    features_per_step: int | None = None
    random_orders: int = 3


def features(entry: ModelEntry, x: torch.Tensor) -> torch.Tensor:
    """Each element's feature index: an image's channels at one pixel share one; a text's special tokens are -1."""
    if entry.text is not None:  # the text's other tokens, numbered in order
        special = torch.tensor([int(i) in entry.text.special_ids for i in x.tolist()], dtype=torch.bool)
        index = torch.cumsum((~special).long(), 0) - 1
        return torch.where(special, torch.full_like(index, -1), index)
    if entry.spec.input.kind == "image":
        channels, height, width = x.shape
        return torch.arange(height * width).reshape(1, height, width).expand(channels, height, width)
    return torch.arange(x.numel()).reshape(x.shape)


def feature_relevance(index: torch.Tensor, relevance: np.ndarray) -> np.ndarray:
    """The relevance of each feature: the sum over its elements."""
    flat, values = index.reshape(-1).numpy(), np.asarray(relevance, dtype=np.float64).reshape(-1)
    keep = flat >= 0
    return np.bincount(flat[keep], weights=values[keep], minlength=int(flat.max()) + 1 if keep.any() else 0)


def baseline(entry: ModelEntry, x: torch.Tensor) -> torch.Tensor:
    """What a removed feature becomes, in model space: the middle of the input range (a tabular model's training
    mean: 0 once standardised), a text model's mask token; 0 for a model without a range."""
    if entry.text is not None:
        return torch.full_like(x, entry.text.mask_id)
    spec = entry.spec.input
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


def evaluate(entry: ModelEntry, rows: Sequence[torch.Tensor], explained: Sequence[InstanceExplanation],
             asked: Evaluation) -> list[Faithfulness]:
    """The faithfulness of each explanation, all perturbed copies of all rows in one pass."""
    plans, sizes = [], []
    for x, result in zip(rows, explained, strict=True):
        index = features(entry, x)
        relevance = feature_relevance(index, np.asarray(result.relevance))
        copies = faithfulness.plan(x, index, relevance, baseline(entry, x), asked.steps, asked.features_per_step,
                                   asked.random_orders)
        plans.append(copies)
        sizes.append((len(copies), len(relevance)))
    logits = _predict(entry, plans)
    answers, at = [], 0
    for (count, feature_count), result in zip(sizes, explained, strict=True):
        curves = faithfulness.read(logits[at:at + count, result.target].tolist(), asked.steps, asked.random_orders)
        at += count
        answers.append(Faithfulness(
            aopc_morf=curves.aopc_morf, aopc_lerf=curves.aopc_lerf, aopc_random=curves.aopc_random,
            curve_morf=curves.morf, curve_lerf=curves.lerf, curve_random=curves.random, steps=asked.steps,
            features_per_step=asked.features_per_step or -(-feature_count // asked.steps)))
    return answers


def _predict(entry: ModelEntry, plans: list[torch.Tensor]) -> torch.Tensor:
    """The logits of every copy: stacked, or (text) padded together with the attention mask."""
    if entry.text is None:
        return entry.prepared.predict(torch.cat(plans))
    ids, extra, _ = entry.text.pad([row for copies in plans for row in copies])
    return entry.prepared.predict(ids, extra)
