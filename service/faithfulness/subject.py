"""What is measured and how much is asked: the `Subject` (a prepared model with its input spec, its tokenizer and the
size of its batched passes) measures explanations by the scheme of service.faithfulness.scheme; an `Evaluation` is
what one measurement asks for, and says when that is more than the model may run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from service.faithfulness.scheme import Curves, baseline, copies, feature_relevance, features, plan, read
from service.lrp import Method, PreparedModel
from service.manifest.model_json import InputSpec
from service.modality.text import Batch, TextModel, batch
from service.serving.config import ServingConfig


@dataclass(frozen=True)
class Evaluation:
    """What a measurement asks: k steps, m features per step (None: ceil(F / k)) and how many random orders."""

    steps: int
    features_per_step: int | None = None
    random_orders: int = 3

    def copies(self, instances: int) -> int:
        """The inputs the model runs to measure `instances` explanations."""
        return copies(instances, self.steps, self.random_orders)

    def refusal(self, instances: int, noun: str, limit: int, each: str = "") -> str | None:
        """None when measuring `instances` (called `noun`) runs at most `limit` inputs (LRP_MAX_EVALUATION_COPIES);
        else what it asks (`each`: per what), counted, and the limit."""
        runs = self.copies(instances)
        if runs <= limit:
            return None
        return (f"asks the model to run {runs} inputs{each} ({instances} {noun} x (1 + {self.steps} steps x (2 + "
                f"{self.random_orders} random orders))); the limit is {limit} (LRP_MAX_EVALUATION_COPIES)")


@dataclass(frozen=True)
class Measurement:
    """One explanation's perturbation curves (and AOPCs), with the steps and features per step they were made with."""

    curves: Curves
    steps: int
    features_per_step: int


@dataclass(frozen=True)
class Subject:
    """A model as it is measured: the prepared graph, its input spec, its tokenizer (text models) and its serving
    limits, which size the passes of perturbed copies as the service sizes its batched passes."""

    prepared: PreparedModel
    input: InputSpec
    text: TextModel | None
    serving: ServingConfig

    def batch(self, rows: Sequence[torch.Tensor]) -> Batch:
        """The rows as one batch of the model (texts: padded, with the attention mask; see service.modality.text)."""
        return batch(self.text, rows)

    def per_pass(self, rows: Sequence[torch.Tensor]) -> int:
        """Copies per pass: what one batched pass of the model takes (texts: at the longest row's length)."""
        return self.serving.inputs_per_pass(None if self.text is None else max(int(row.shape[-1]) for row in rows))

    def predicted(self, rows: Sequence[torch.Tensor]) -> list[int]:
        """Each row's predicted class."""
        x, extra, _ = self.batch(rows)
        chosen: list[int] = self.prepared.predict(x, extra).argmax(1).tolist()
        return chosen

    def explained(self, rows: Sequence[torch.Tensor], targets: Sequence[int], method: Method) -> list[np.ndarray]:
        """`method`'s relevance of each row for its target, explained in one batch (a text: at its own positions)."""
        x, extra, own = self.batch(rows)
        values = self.prepared.explain_resolved(x, list(targets), method, extra=extra).relevance.cpu().numpy()
        return list(values) if own is None else [r[place] for r, place in zip(values, own, strict=True)]

    def input_x_gradient(self, rows: Sequence[torch.Tensor], targets: Sequence[int]) -> list[np.ndarray]:
        """x * d logit_target / dx of each (floating-point) row."""
        x = torch.stack(list(rows))
        return list((x * self.prepared.input_gradient(x, list(targets))).cpu().numpy())

    def measure(self, rows: Sequence[torch.Tensor], relevance: Sequence[np.ndarray],
                targets: Sequence[int | Sequence[int]], asked: Evaluation) -> list[Measurement]:
        """The curves of each row (model space) for its target (several classes: the sum of their logits) from its
        relevance; the perturbed copies of all rows in passes of `per_pass` copies (the last one fewer)."""
        steps, seeds = asked.steps, asked.random_orders
        plans, counts = [], []
        for x, values in zip(rows, relevance, strict=True):
            index = features(self.input, self.text, x)
            scores = feature_relevance(index, values)
            plans.append(plan(x, index, scores, baseline(self.input, self.text, x), steps, asked.features_per_step,
                              seeds))
            counts.append(asked.features_per_step or math.ceil(len(scores) / steps))
        every = [row for copies_of_row in plans for row in copies_of_row]
        size = self.per_pass(rows)
        logits = torch.cat([self.prepared.predict(*self.batch(every[start:start + size])[:2])
                            for start in range(0, len(every), size)])
        found, at = [], 0
        for copies_of_row, target, count in zip(plans, targets, counts, strict=True):
            chosen = [target] if isinstance(target, int) else list(target)
            curves = read(logits[at:at + len(copies_of_row), chosen].sum(dim=1).tolist(), steps, seeds)
            found.append(Measurement(curves, steps, count))
            at += len(copies_of_row)
        return found
