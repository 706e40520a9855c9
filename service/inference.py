"""Predict and explain on a registered model: request values in, plain Python results out (no web code).

Engine input errors become InvalidInputError (HTTP 422). Calls are synchronous: the web layer runs them
in a worker thread so the event loop never waits on torch.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from service.errors import DeviceMemoryError, InvalidInputError, NumericalError
from service.lrp import ExplanationInputError
from service.registry import ModelEntry, default_params

log = logging.getLogger("service")

TargetValue = int | str | None
Target = TargetValue | Sequence[TargetValue]


@dataclass(frozen=True)
class Prediction:
    """One instance's predicted class, its label, class probabilities and raw logits."""

    index: int
    label: str
    probabilities: list[float]
    logits: list[float]


@dataclass(frozen=True)
class InstanceExplanation:
    """One instance's explained class and its relevance map (shape of one model input)."""

    target: int
    label: str
    logit: float
    probability: float
    relevance: np.ndarray
    relevance_sum: float
    conservation_delta: float


def probabilities(entry: ModelEntry, logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities: sigmoid per output for sigmoid models, softmax over the logits otherwise."""
    return logits.sigmoid() if entry.spec.output_activation == "sigmoid" else logits.softmax(dim=1)


def predict(entry: ModelEntry, x: torch.Tensor) -> list[Prediction]:
    """The prediction of each instance of the batch x (model space)."""
    try:
        logits, _ = entry.prepared.predict(x)
    except ExplanationInputError as problem:
        raise InvalidInputError(str(problem)) from None
    probs = probabilities(entry, logits).cpu()
    logits = logits.cpu()
    predictions = []
    for row, prob in zip(logits, probs, strict=True):
        index = int(prob.argmax())
        predictions.append(Prediction(index, entry.classes[index], prob.tolist(), row.tolist()))
    return predictions


def resolve_targets(entry: ModelEntry, target: Target, count: int) -> list[int | None]:
    """One class index (or None: the argmax) per instance, from an index, a class label or a list of them."""
    if target is None or isinstance(target, int | str):
        return [_class_index(entry, target, "target")] * count
    values = list(target)
    if len(values) != count:
        raise InvalidInputError(f"target has {len(values)} entries but there are {count} inputs; give one target "
                                "per input, a single target for all, or null for each input's predicted class")
    return [_class_index(entry, value, f"target[{i}]") for i, value in enumerate(values)]


def _class_index(entry: ModelEntry, value: TargetValue, where: str) -> int | None:
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


def explain(entry: ModelEntry, x: torch.Tensor, target: Target, composite: str | dict[str, Any] | None,
            params: dict[str, Any]) -> list[InstanceExplanation]:
    """LRP relevance of each instance for its target under `composite` (None: the model's default)."""
    chosen = entry.spec.default_composite if composite is None else composite
    targets = resolve_targets(entry, target, len(x))
    try:
        result = entry.prepared.explain(x, targets, chosen, **default_params(entry, chosen, params))
    except ExplanationInputError as problem:
        raise InvalidInputError(str(problem)) from None
    probs = probabilities(entry, result.logits).gather(1, result.targets[:, None])[:, 0].cpu().tolist()
    relevance = result.relevance.cpu().numpy()
    return [
        InstanceExplanation(target=index, label=entry.classes[index], logit=logit, probability=prob,
                            relevance=relevance[i], relevance_sum=total, conservation_delta=delta)
        for i, (index, logit, prob, total, delta) in enumerate(zip(
            result.targets.cpu().tolist(), result.target_logits.cpu().tolist(), probs,
            result.relevance_sum.cpu().tolist(), result.conservation_delta.cpu().tolist(), strict=True))
    ]


@dataclass(frozen=True)
class Sample:
    """One instance queued for a batched pass: its model-space tensor, (explain only) its target, and its
    position in its request (named in its error if it fails alone)."""

    x: torch.Tensor
    target: int | None = None
    position: int = 0


def batch_key(verb: str, composite: str | dict[str, Any] | None = None,
              params: dict[str, Any] | None = None) -> tuple[str, ...]:
    """Samples share a pass only under the same verb, composite and parameters: the canonical JSON of each."""
    if verb == "predict":
        return (verb,)
    return (verb, json.dumps(composite, sort_keys=True), json.dumps(params or {}, sort_keys=True))


def run_batch(entry: ModelEntry, key: Hashable, samples: list[Sample]) -> list[Any]:
    """One batched pass over samples of many requests: a Prediction or InstanceExplanation per sample, or the
    error of a sample that failed alone. On device out-of-memory the batch is halved and each half retried;
    an input that does not fit even alone fails alone with DeviceMemoryError."""
    try:
        return _run_once(entry, key, samples)
    except torch.OutOfMemoryError:
        _release_cached_memory(entry)
        if len(samples) == 1:
            log.error("model '%s': one input alone does not fit in device memory", entry.name)
            return [DeviceMemoryError(f"model '{entry.name}' ran out of device memory on this input alone; "
                                      "retry when the server is less busy or ask for a smaller input")]
        half = len(samples) // 2
        log.warning("model '%s': out of device memory on a batch of %d; retrying as %d + %d",
                    entry.name, len(samples), half, len(samples) - half)
        return run_batch(entry, key, samples[:half]) + run_batch(entry, key, samples[half:])


def _release_cached_memory(entry: ModelEntry) -> None:
    """Hand the CUDA caching allocator's free blocks back, so the retry finds contiguous memory."""
    if entry.prepared.device.type == "cuda":
        torch.cuda.empty_cache()


def _run_once(entry: ModelEntry, key: Hashable, samples: list[Sample]) -> list[Any]:
    """The batched pass itself. A sample whose logits overflow fails alone (InvalidInputError: its input is far
    out of scale); one whose relevance is not finite fails alone (NumericalError)."""
    assert isinstance(key, tuple)
    x = torch.stack([sample.x for sample in samples])
    if key[0] == "predict":
        return [prediction if all(map(math.isfinite, prediction.logits)) else _overflow(entry, sample)
                for prediction, sample in zip(predict(entry, x), samples, strict=True)]
    composite, params = json.loads(key[1]), json.loads(key[2])
    results: list[Any] = list(explain(entry, x, [s.target for s in samples], composite, params))
    for i, (result, sample) in enumerate(zip(results, samples, strict=True)):
        if not math.isfinite(result.logit):
            results[i] = _overflow(entry, sample)
        elif not np.isfinite(result.relevance).all():
            results[i] = NumericalError(f"inputs[{sample.position}]: its relevance is not finite under composite "
                                        f"{composite}; try a larger epsilon or stabilizer")
    return results


def _overflow(entry: ModelEntry, sample: Sample) -> InvalidInputError:
    """The error of an input whose logits are not finite: with finite, checked weights only an input far out of
    the model's scale does that."""
    return InvalidInputError(f"inputs[{sample.position}]: model '{entry.name}' overflows float32 on it (its logits "
                             "are not finite); its values are far outside the scale the model expects "
                             f"(GET /models/{entry.name} describes its input)")


def ranked_features(features: Sequence[str], relevance: np.ndarray, values: Sequence[float]) -> list[dict[str, Any]]:
    """Tabular features with their value and relevance, most relevant (largest |R|) first."""
    order = np.argsort(-np.abs(relevance), kind="stable")
    return [{"name": features[i], "value": float(values[i]), "relevance": float(relevance[i])} for i in order]
