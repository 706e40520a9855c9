"""Faithfulness of explanations served with `"evaluate"` (service.faithfulness has the scheme): one pass over every
perturbed copy of a batch's evaluated samples. Runs on the device thread, after the explanation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from service import faithfulness
from service.schemas import Faithfulness, InstanceExplanation
from service.store.registry import ModelEntry


@dataclass(frozen=True)
class Evaluation:
    """What a request asks: k steps, m features per step (None: ceil(F / k)) and how many random orders."""

    steps: int
    features_per_step: int | None = None
    random_orders: int = 3


def evaluate(entry: ModelEntry, rows: Sequence[torch.Tensor], explained: Sequence[InstanceExplanation],
             asked: Evaluation) -> list[Faithfulness]:
    """The faithfulness of each explanation, all perturbed copies of all rows in one pass."""
    plans, sizes = [], []
    for x, result in zip(rows, explained, strict=True):
        index = faithfulness.features(entry.spec.input, entry.text, x)
        relevance = faithfulness.feature_relevance(index, np.asarray(result.relevance))
        copies = faithfulness.plan(x, index, relevance, faithfulness.baseline(entry.spec.input, entry.text, x),
                                   asked.steps, asked.features_per_step, asked.random_orders)
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
