"""Faithfulness of explanations served with `"evaluate"` (service.faithfulness has the scheme): the perturbed copies of
a batch's evaluated samples together, in passes as large as the model's batched passes. Runs on the device thread,
after the explanation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from service import faithfulness
from service.schemas import Faithfulness, InstanceExplanation
from service.store import evaluation
from service.store.registry import ModelEntry


@dataclass(frozen=True)
class Evaluation:
    """What a request asks: k steps, m features per step (None: ceil(F / k)) and how many random orders."""

    steps: int
    features_per_step: int | None = None
    random_orders: int = 3

    def copies(self, instances: int) -> int:
        """The inputs the model runs to evaluate `instances` explanations (service.faithfulness.copies)."""
        return faithfulness.copies(instances, self.steps, self.random_orders)


def evaluate(entry: ModelEntry, rows: Sequence[torch.Tensor], explained: Sequence[InstanceExplanation],
             asked: Evaluation) -> list[Faithfulness]:
    """The faithfulness of each explanation, the perturbed copies of all rows in passes of the model's size."""
    found = faithfulness.measured(entry.prepared, entry.spec.input, entry.text, rows,
                                  [np.asarray(result.relevance) for result in explained],
                                  [result.target for result in explained], asked.steps, asked.features_per_step,
                                  asked.random_orders, evaluation.per_pass(entry.serving, entry.text, rows))
    return [Faithfulness(aopc_morf=curves.aopc_morf, aopc_lerf=curves.aopc_lerf, aopc_random=curves.aopc_random,
                         curve_morf=curves.morf, curve_lerf=curves.lerf, curve_random=curves.random,
                         steps=asked.steps, features_per_step=per_step) for curves, per_step in found]
