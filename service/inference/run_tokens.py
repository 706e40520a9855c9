"""A token classifier's batched pass: every token's logits (a prediction), or its spans explained (one forward pass
for the labels the spans follow, then one batched explanation of every span of every text: each span a row, the
seed its tokens' chosen logits)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from service.errors import InvalidInputError, NumericalError
from service.inference.job import BatchKey, Sample
from service.inference.results import Predicted, Result, SpanExplained, TokensExplained
from service.inference.spans import TokenTarget, entities
from service.loader import ModelEntry


@dataclasses.dataclass(frozen=True)
class _Span:
    sample: int
    first: int
    last: int
    classes: tuple[int, ...]  # each token's class, first..last
    entity: str | None
    score: float | None


def run_tokens(entry: ModelEntry, key: BatchKey, samples: list[Sample], x: torch.Tensor,
               extra: dict[str, torch.Tensor], own: list[slice] | None) -> list[Result]:
    """Each sample's Predicted ([tokens, classes] logits and probabilities of its own tokens) or TokensExplained."""
    count = len(entry.classes)
    logits = entry.prepared.predict(x, extra).reshape(len(samples), -1, count)
    places = own or [slice(0, logits.shape[1])] * len(samples)
    mine = [logits[i, place] for i, place in enumerate(places)]
    if key.method is None:
        return [Predicted(row.cpu().numpy(), row.softmax(dim=-1).cpu().numpy()) if bool(torch.isfinite(row).all())
                else _overflow(entry, sample) for sample, row in zip(samples, mine, strict=True)]
    spans = [span for i, sample in enumerate(samples) for span in _spans(entry, i, sample, mine[i])]
    found: dict[int, list[SpanExplained]] = {i: [] for i in range(len(samples))}
    failed: dict[int, Result] = {}
    if spans:
        rows = torch.tensor([span.sample for span in spans], device=x.device)
        seeds = [[(places[span.sample].start + span.first + k) * count + c for k, c in enumerate(span.classes)]
                 for span in spans]
        result = entry.prepared.explain_resolved(x[rows], seeds, key.method,
                                                 extra={name: value[rows] for name, value in extra.items()})
        relevance = result.relevance.cpu().numpy()
        for j, (span, logit, total, delta) in enumerate(zip(spans, result.target_logits.tolist(),
                                                            result.relevance_sum.tolist(),
                                                            result.conservation_delta.tolist(), strict=True)):
            values = relevance[j][places[span.sample]]
            if not (math.isfinite(logit) and np.isfinite(values).all()):
                failed[span.sample] = NumericalError(f"inputs[{samples[span.sample].position}]: its relevance is not "
                                                     f"finite under composite {key.method.composite.name}")
                continue
            found[span.sample].append(SpanExplained(span.first, span.last, span.classes, span.entity, span.score,
                                                    logit, values, total, delta))
    return [failed.get(i) or TokensExplained(tuple(found[i]), mine[i].cpu().numpy()) for i in range(len(samples))]


def _spans(entry: ModelEntry, index: int, sample: Sample, logits: torch.Tensor) -> list[_Span]:
    """The spans a sample explains: its token and class, or each entity its predicted labels make."""
    predicted = logits.argmax(dim=-1).tolist()
    if isinstance(sample.target, TokenTarget):
        token, chosen = sample.target.token, sample.target.cls
        return [_Span(index, token, token, (predicted[token] if chosen is None else chosen,), None, None)]
    scores = logits.softmax(dim=-1).max(dim=-1).values.tolist()
    labels = [entry.classes[c] for c in predicted]
    special = sample.special or (False,) * len(labels)
    return [_Span(index, e.first, e.last, tuple(predicted[e.first:e.last + 1]), e.kind, e.score)
            for e in entities(labels, scores, special)]


def _overflow(entry: ModelEntry, sample: Sample) -> InvalidInputError:
    return InvalidInputError(f"inputs[{sample.position}]: model '{entry.name}' overflows float32 on it (its logits "
                             "are not finite)")
