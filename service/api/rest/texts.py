"""Texts as the REST contract shows them: a text's tokens with their relevance and top words, a token classifier's
answers (each token's label and the entities they make; each explained span) and a question answerer's (its answer;
the explained span)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.api.rest.drawn import Media, TextPanel, drawn_panels
from service.api.schemas import (
    AnswerBody,
    EntityBody,
    ExplainResponse,
    InstanceExplanation,
    Prediction,
    SpanExplanation,
    TextExplanation,
    TokenLabel,
    TokenRelevance,
    WordRelevance,
)
from service.inference import Job, TokensExplained
from service.inference.answers import best_answer, span
from service.inference.results import SpanExplained
from service.inference.spans import entities
from service.loader import ModelEntry
from service.modality import text


def text_explanation(entry: ModelEntry, tokens: text.TokenizedText, relevance: np.ndarray) -> TextExplanation:
    """A text's tokens with their relevance and its top words for and against the target (a pair's: each token and
    word with the name of its text, offsets in it)."""
    values = [float(v) for v in relevance]
    positive, negative = text.top_words(text.words(tokens, values))
    pair = entry.text.spec.pair if entry.text is not None else None
    named = [None if pair is None or special else pair[tokens.sequence_of(i)]
             for i, special in enumerate(tokens.special)]

    def listed(found: list[text.Word]) -> list[WordRelevance]:
        return [WordRelevance(word=w.text, start=w.start, end=w.end, relevance=w.relevance,
                              segment=None if pair is None else pair[w.sequence]) for w in found]

    return TextExplanation(
        tokens=[TokenRelevance(token=token, start=start, end=end, special=special, relevance=value, segment=segment)
                for token, (start, end), special, value, segment in zip(tokens.tokens, tokens.offsets, tokens.special,
                                                                        values, named, strict=True)],
        top_positive=listed(positive), top_negative=listed(negative), truncated=tokens.truncated)


def token_prediction(entry: ModelEntry, tokens: text.TokenizedText, probabilities: np.ndarray) -> Prediction:
    """A token classifier's prediction of one text: each token's most probable label, and the entities."""
    best = probabilities.argmax(axis=1).tolist()
    scores = [float(probabilities[i, c]) for i, c in enumerate(best)]
    labels = [entry.classes[c] for c in best]
    return Prediction(
        tokens=[TokenLabel(token=token, start=start, end=end, special=special, label=label, probability=score)
                for token, (start, end), special, label, score in zip(
                    tokens.tokens, tokens.offsets, tokens.special, labels, scores, strict=True)],
        entities=[EntityBody(entity=e.kind, text=said, start=start, end=end, score=e.score, first_token=e.first,
                             last_token=e.last)
                  for e in entities(labels, scores, tokens.special)
                  for said, start, end in [_where(entry, tokens, e.first, e.last)]],
        truncated=tokens.truncated)


def answer_prediction(entry: ModelEntry, tokens: text.TokenizedText, logits: np.ndarray) -> Prediction:
    """A question answerer's prediction of one question and context: the answer (see service.inference.answers)."""
    assert entry.text is not None and entry.text.spec.pair is not None, "question answerers read pairs"
    found = best_answer(logits, tokens, entry.text)
    return Prediction(truncated=tokens.truncated, answer=None if found is None or found.score is None else AnswerBody(
        text=found.text, start=found.start, end=found.end, score=found.score, first_token=found.first,
        last_token=found.last))


def _where(entry: ModelEntry, tokens: text.TokenizedText, first: int, last: int) -> tuple[str, int, int]:
    """The text of tokens `first`..`last` and its [start, end) offsets in the input (a pair's: in the text it is in,
    words whole, special tokens left out: service.inference.answers.span)."""
    if entry.text is not None and entry.text.spec.pair is not None:
        found = span(tokens, first, last, None)
        return found.text, found.start, found.end
    start, end = tokens.offsets[first][0], tokens.offsets[last][1]
    return tokens.source(first)[start:end], start, end


def _segment(entry: ModelEntry, tokens: text.TokenizedText, first: int, last: int) -> str | None:
    """The name of the pair's text a span's text is in (None for single texts and spans of special tokens)."""
    pair = entry.text.spec.pair if entry.text is not None else None
    sequence = None if pair is None else span(tokens, first, last, None).sequence
    return None if pair is None or sequence is None else pair[sequence]


def span_explanation(entry: ModelEntry, tokens: text.TokenizedText, span: SpanExplained) -> SpanExplanation:
    """One explained span of a text as the contract shows it."""
    said, start, end = _where(entry, tokens, span.first, span.last)
    return SpanExplanation(
        entity=span.entity, score=span.score, first_token=span.first, last_token=span.last,
        text=said, start=start, end=end, segment=_segment(entry, tokens, span.first, span.last),
        target=list(span.targets),
        label=[entry.classes[c] for c in span.targets], logit=span.logit, relevance_sum=span.relevance_sum,
        conservation_delta=span.conservation_delta, tokens=text_explanation(entry, tokens, span.relevance))


def token_answer(job: Job, output: str, results: Sequence[TokensExplained]) -> ExplainResponse | Media:
    """A token classifier's explanations: each text's spans in JSON, or one coloured panel per span."""
    texts = job.decoded.texts
    assert texts is not None and job.composite is not None and job.params is not None, "token classifiers read texts"
    if output != "json":
        panels: list[TextPanel] = []
        for i, (result, tokens) in enumerate(zip(results, texts, strict=True)):
            panels.extend((_title(job.entry, i, tokens, span), tokens, span.relevance) for span in result.spans)
            if not result.spans:  # nothing to explain: the text, uncoloured, says so
                nothing = "answer" if job.entry.spec.task == "question_answering" else "entity"
                panels.append((f"#{i} no {nothing} predicted", tokens, np.zeros(len(tokens.ids))))
        return drawn_panels(job, panels, html=output == "html")
    return ExplainResponse(model=job.entry.name, composite=job.composite, params=job.params, explanations=[
        InstanceExplanation(spans=[span_explanation(job.entry, tokens, span) for span in result.spans])
        for result, tokens in zip(results, texts, strict=True)])


def _title(entry: ModelEntry, index: int, tokens: text.TokenizedText, span: SpanExplained) -> str:
    """A span's panel: which text, the span's text, what was explained and its logit."""
    said = _where(entry, tokens, span.first, span.last)[0]
    what = span.entity if span.entity is not None else " + ".join(entry.classes[c] for c in span.targets) \
        if entry.spec.task == "question_answering" else entry.classes[span.targets[0]]
    return f"#{index} {what} '{said}' (tokens {span.first}-{span.last}): logit {span.logit:.3g}"
