"""A token classifier's batched pass: every token's logits (a prediction), or its spans explained (one forward pass
for the labels the spans follow, then every span of every text explained in passes of at most the model's batch
size and token budget: each span a row, the seed its tokens' chosen logits; a text of more than MOST_SPANS spans
fails alone)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from service.errors import InvalidInputError
from service.inference.failures import not_finite, overflow
from service.inference.job import BatchKey, Sample
from service.inference.results import Predicted, Result, SpanExplained, TokensExplained
from service.inference.spans import TokenTarget, entities
from service.loader import ModelEntry

MOST_SPANS = 128  # the spans of one text an explanation may hold: each is a forward and backward pass of the text


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
                else overflow(entry, sample) for sample, row in zip(samples, mine, strict=True)]
    found: dict[int, list[SpanExplained]] = {i: [] for i in range(len(samples))}
    failed: dict[int, Result] = {}
    spans: list[_Span] = []
    for i, sample in enumerate(samples):
        own_spans = _spans(entry, i, sample, mine[i])
        if len(own_spans) > MOST_SPANS:
            failed[i] = InvalidInputError(
                f"inputs[{sample.position}]: {len(own_spans)} entities predicted; at most {MOST_SPANS} spans of a "
                "text are explained (each is a pass over the whole text): split the text, or name one token with "
                "{\"token\": i}")
            continue
        spans.extend(own_spans)
    rows_per_pass = max(1, min(entry.serving.max_batch_size, entry.serving.max_batch_tokens // x.shape[1]))
    for start in range(0, len(spans), rows_per_pass):
        chunk = spans[start:start + rows_per_pass]
        rows = torch.tensor([span.sample for span in chunk], device=x.device)
        seeds = [[(places[span.sample].start + span.first + k) * count + c for k, c in enumerate(span.classes)]
                 for span in chunk]
        result = entry.prepared.explain_resolved(x[rows], seeds, key.method,
                                                 extra={name: value[rows] for name, value in extra.items()})
        relevance = result.relevance.cpu().numpy()
        for j, (span, logit, total, delta) in enumerate(zip(chunk, result.target_logits.tolist(),
                                                            result.relevance_sum.tolist(),
                                                            result.conservation_delta.tolist(), strict=True)):
            values = relevance[j][places[span.sample]]
            if not math.isfinite(logit):
                failed[span.sample] = overflow(entry, samples[span.sample])
            elif not np.isfinite(values).all():
                failed[span.sample] = not_finite(entry, samples[span.sample], key.method)
            else:
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
