"""A request decoded once into a frozen Job: the model, the batch key (verb, composite, parameters) and one sample
per instance with its resolved target. Every decision about what a request runs is taken here, whatever protocol it
came in: the default composite, the merged parameters, the targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from service.errors import InvalidInputError
from service.faithfulness import Evaluation
from service.loader import ModelEntry
from service.lrp import ExplanationInputError, Method
from service.modality.instances import Decoded

Verb = Literal["predict", "explain"]
ClassRef = int | str | None  # a class index, a class label, or None: the predicted class
TargetRequest = ClassRef | Sequence[ClassRef]  # one for all instances, or one per instance


@dataclass(frozen=True)
class BatchKey:
    """Inputs share a batched pass only under the same key: the verb and, to explain, the resolved method."""

    verb: Verb
    method: Method | None = None


PREDICT = BatchKey("predict")


@dataclass(frozen=True)
class Sample:
    """One instance in a batched pass: its model-space tensor, its position in its request (named in its error if
    it fails alone) and, to explain, its target class (None: the predicted class)."""

    x: torch.Tensor
    position: int
    target: int | None = None
    evaluate: Evaluation | None = None

    @property
    def size(self) -> int:
        """Its size in a padded batch: a text's token ids (a batch of texts is padded to the longest)."""
        return int(self.x.shape[-1])


@dataclass(frozen=True)
class Job:
    """One decoded request. `composite` and `params` are what the answer reports (the composite as named, the
    parameters after merging the model's defaults); `key.method` is the same, resolved for the engine."""

    entry: ModelEntry
    key: BatchKey
    samples: tuple[Sample, ...]
    decoded: Decoded
    composite: str | dict[str, Any] | None = None
    params: dict[str, Any] | None = None


def predict_job(entry: ModelEntry, decoded: Decoded) -> Job:
    """The job of a /predict request."""
    return Job(entry, PREDICT, tuple(Sample(row, i) for i, row in enumerate(decoded.rows)), decoded)


def explain_job(entry: ModelEntry, decoded: Decoded, target: TargetRequest, composite: str | dict[str, Any] | None,
                params: dict[str, Any], evaluate: Evaluation | None = None) -> Job:
    """The job of an explain request: the model's default composite when none is named; its parameters are the
    model's defaults (see ModelEntry.default_params) with the request's own values on top."""
    chosen = entry.spec.default_composite if composite is None else composite
    merged = {**entry.default_params(chosen), **{k: v for k, v in params.items() if v is not None}}
    targets = resolve_targets(entry, target, len(decoded.x))
    try:
        method = entry.prepared.resolve(chosen, **merged)
    except ExplanationInputError as problem:
        raise InvalidInputError(str(problem)) from None
    samples = tuple(Sample(row, i, t, evaluate) for i, (row, t) in enumerate(zip(decoded.rows, targets, strict=True)))
    return Job(entry, BatchKey("explain", method), samples, decoded, chosen, merged)


def resolve_targets(entry: ModelEntry, target: TargetRequest, count: int) -> list[int | None]:
    """One class index (or None: the argmax) per instance, from an index, a class label or a list of them."""
    if target is None or isinstance(target, int | str):
        return [_class_index(entry, target, "target")] * count
    values = list(target)
    if len(values) != count:
        raise InvalidInputError(f"target has {len(values)} entries but there are {count} inputs; give one target "
                                "per input, a single target for all, or null for each input's predicted class")
    return [_class_index(entry, value, f"target[{i}]") for i, value in enumerate(values)]


def _class_index(entry: ModelEntry, value: ClassRef, where: str) -> int | None:
    classes = entry.classes
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInputError(f"{where} must be a class index or label, not a boolean")
    if isinstance(value, str):
        if value not in classes:
            raise InvalidInputError(f"{where}: unknown class label '{value}'; labels are {classes}")
        return classes.index(value)
    if not 0 <= value < len(classes):
        raise InvalidInputError(f"{where}: class index {value} is out of range; the model has {len(classes)} "
                                f"classes (0..{len(classes) - 1})")
    return value
