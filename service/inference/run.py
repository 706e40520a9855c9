"""The device side of the pipeline: one batched pass over samples of many requests, each sample's result (plain data,
service.inference.results) or the error of a sample that failed alone. Runs on the device thread
(service.runtime.state), never on the event loop."""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import torch

from service.errors import DeviceMemoryError, InvalidInputError
from service.faithfulness import Evaluation
from service.inference.answers import AnswerTarget
from service.inference.failures import not_finite, overflow
from service.inference.job import BatchKey, Sample
from service.inference.results import Answered, Explained, Predicted, Result
from service.inference.run_tokens import run_tokens
from service.inference.spans import TokenTarget
from service.loader import ModelEntry
from service.lrp import UnevenSelectionError
from service.modality import text
from service.runtime.state import ServiceState

log = logging.getLogger("service")
PipelineState = ServiceState[BatchKey, Sample, Answered]  # the state the pipeline runs on


def probabilities(entry: ModelEntry, logits: torch.Tensor) -> np.ndarray | None:
    """Class probabilities: sigmoid per output for sigmoid models (multi-label ones), softmax over the logits
    otherwise, none for a regression's values."""
    if entry.spec.task == "regression":
        return None
    each_alone = entry.spec.task == "multi_label" or entry.spec.output_activation == "sigmoid"
    chosen = logits.sigmoid() if each_alone else logits.softmax(dim=1)
    found: np.ndarray = chosen.cpu().numpy()
    return found


def run_batch(entry: ModelEntry, key: BatchKey, samples: list[Sample]) -> list[Result]:
    """One batched pass. On device out-of-memory the batch is halved and each half retried; an input that does not
    fit even alone fails alone with DeviceMemoryError. A batch whose samples a boolean mask over the batch selects
    unevenly (service.lrp.UnevenSelectionError) runs sample by sample; one that fails alone is a 422."""
    try:
        return _run_once(entry, key, samples)
    except UnevenSelectionError as problem:  # samples the model regroups unevenly (T5's <eos>): each alone is right
        if len(samples) == 1:
            return [InvalidInputError(f"inputs[{samples[0].position}]: {problem}")]
        return [result for sample in samples for result in run_batch(entry, key, [sample])]
    except torch.OutOfMemoryError:
        if entry.prepared.device.type == "cuda":
            torch.cuda.empty_cache()  # hand the allocator's free blocks back, so the retry finds contiguous memory
        if len(samples) == 1:
            log.error("model '%s': one input alone does not fit in device memory", entry.name)
            return [DeviceMemoryError(f"model '{entry.name}' ran out of device memory on this input alone; "
                                      "retry when the server is less busy or ask for a smaller input")]
        half = len(samples) // 2
        log.warning("model '%s': out of device memory on a batch of %d; retrying as %d + %d",
                    entry.name, len(samples), half, len(samples) - half)
        return run_batch(entry, key, samples[:half]) + run_batch(entry, key, samples[half:])


def _run_once(entry: ModelEntry, key: BatchKey, samples: list[Sample]) -> list[Result]:
    """The pass itself. A sample whose logits overflow fails alone (InvalidInputError: its input is far out of
    scale); one whose relevance is not finite fails alone (NumericalError)."""
    x, extra, own = model_inputs(entry, samples)
    if entry.per_token:
        return run_tokens(entry, key, samples, x, extra, own)
    if key.method is None:
        return _predictions(entry, entry.prepared.predict(x, extra), samples)
    selections = [s.target for s in samples if not isinstance(s.target, TokenTarget | AnswerTarget)]
    assert len(selections) == len(samples), "token and span targets are a token classifier's or answerer's"
    result = entry.prepared.explain_resolved(x, selections, key.method, extra=extra)
    every = probabilities(entry, result.logits)
    logits_all, relevance = result.logits.cpu().numpy(), result.relevance.cpu().numpy()
    answers: list[Result] = []
    for i, (sample, argmax, logit, total, delta) in enumerate(zip(
            samples, result.targets.cpu().tolist(), result.target_logits.cpu().tolist(),
            result.relevance_sum.cpu().tolist(), result.conservation_delta.cpu().tolist(), strict=True)):
        targets = sample.target if isinstance(sample.target, tuple) else (argmax,)
        probability = None if every is None or len(targets) > 1 else float(every[i, targets[0]])
        relevance_i = relevance[i] if own is None else relevance[i][own[i]]
        if not math.isfinite(logit):
            answers.append(overflow(entry, sample))
        elif not np.isfinite(relevance_i).all():
            answers.append(not_finite(entry, sample, key.method))
        else:
            answers.append(Explained(targets, logit, probability, logits_all[i], None if every is None else every[i],
                                     relevance_i, total, delta))
    return _evaluated(entry, samples, answers)


def _evaluated(entry: ModelEntry, samples: list[Sample], answers: list[Result]) -> list[Result]:
    """Each explanation whose request asked for it with its faithfulness: the perturbed copies of all samples that
    ask the same in passes of the model's batch size, after the explanation."""
    groups: dict[Evaluation, list[tuple[int, Explained]]] = {}
    for i, (sample, answer) in enumerate(zip(samples, answers, strict=True)):
        if sample.evaluate is not None and isinstance(answer, Explained):
            groups.setdefault(sample.evaluate, []).append((i, answer))
    for asked, chosen in groups.items():
        found = entry.subject.measure([samples[i].x for i, _ in chosen], [answer.relevance for _, answer in chosen],
                                      [answer.targets for _, answer in chosen], asked)
        for (i, answer), measured in zip(chosen, found, strict=True):
            answers[i] = dataclasses.replace(answer, faithfulness=measured)
    return answers


def model_inputs(entry: ModelEntry, samples: list[Sample]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[slice] | None]:
    """The batch of the samples: stacked, or (text) padded to the longest with the attention mask as an extra input
    and each sample's own positions, at which its relevance is read."""
    return text.batch(entry.text, [sample.x for sample in samples])


def _predictions(entry: ModelEntry, logits: torch.Tensor, samples: list[Sample]) -> list[Result]:
    every = probabilities(entry, logits)
    answers: list[Result] = []
    for i, (sample, row) in enumerate(zip(samples, logits.cpu().numpy(), strict=True)):
        found = Predicted(row, None if every is None else every[i])
        answers.append(found if np.isfinite(row).all() else overflow(entry, sample))
    return answers
