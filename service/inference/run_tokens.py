"""The batched pass of a model with every token's logits (a token classifier, a question answerer): every token's
logits (a prediction), or its spans explained (one forward pass for the labels or the answer the spans follow, then
every span of every text explained in passes of at most the model's batch size and token budget: each span a row,
the seed its chosen logits: each token's class, or an answer's start and end; a text of more than MOST_SPANS spans
fails alone)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from service.errors import InvalidInputError
from service.inference.answers import AnswerTarget, best_answer, span_score
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
    classes: tuple[int, ...]  # the classes explained: each token's, first..last, or an answer's (start, end)
    seeds: tuple[tuple[int, int], ...]  # the (token, class) logits explained together
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
        answers = entry.spec.task == "question_answering"  # an answerer's two logits per token are no distribution
        return [Predicted(row.cpu().numpy(), None if answers else row.softmax(dim=-1).cpu().numpy())
                if bool(torch.isfinite(row).all()) else overflow(entry, sample)
                for sample, row in zip(samples, mine, strict=True)]
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
        seeds = [[(places[span.sample].start + token) * count + c for token, c in span.seeds] for span in chunk]
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
    """The spans a sample explains: its token and class, or each entity its predicted labels make; a question
    answerer's: the span it names or the predicted answer (none when the text has no context token)."""
    if entry.spec.task == "question_answering":
        return _answer_spans(entry, index, sample, logits)
    predicted = logits.argmax(dim=-1).tolist()
    if isinstance(sample.target, TokenTarget):
        token, chosen = sample.target.token, sample.target.cls
        chosen = predicted[token] if chosen is None else chosen
        return [_Span(index, token, token, (chosen,), ((token, chosen),), None, None)]
    scores = logits.softmax(dim=-1).max(dim=-1).values.tolist()
    labels = [entry.classes[c] for c in predicted]
    special = sample.tokens.special if sample.tokens is not None else (False,) * len(labels)
    return [_Span(index, e.first, e.last, tuple(predicted[e.first:e.last + 1]),
                  tuple((e.first + k, c) for k, c in enumerate(predicted[e.first:e.last + 1])), e.kind, e.score)
            for e in entities(labels, scores, special)]


def _answer_spans(entry: ModelEntry, index: int, sample: Sample, logits: torch.Tensor) -> list[_Span]:
    """A question answerer's span: tokens first..last (a request's, or the predicted answer's where it names none)
    and the start logit at first, the end logit at last, or both."""
    tokens, asked = sample.tokens, sample.target
    assert tokens is not None and entry.text is not None and entry.text.spec.pair is not None, "answerers read pairs"
    assert asked is None or isinstance(asked, AnswerTarget), "an answerer's targets are spans"
    wanted = asked or AnswerTarget()
    values = logits.cpu().numpy()
    predicted = best_answer(values, tokens, entry.text) if wanted.first is None or wanted.last is None else None
    first, last = wanted.first, wanted.last
    if predicted is not None:  # the predicted answer's edge where the request names none, kept on its side
        first = min(predicted.first, last) if first is None and last is not None else first
        last = max(predicted.last, first) if last is None and first is not None else last
        first, last = (predicted.first, predicted.last) if first is None and last is None else (first, last)
    if first is None or last is None:
        return []
    seeds = {"both": ((first, 0), (last, 1)), "start": ((first, 0),), "end": ((last, 1),)}[wanted.logits]
    return [_Span(index, first, last, tuple(c for _, c in seeds), seeds, None,
                  span_score(values, tokens, entry.text, first, last))]
