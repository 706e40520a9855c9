"""Extractive question answering: the answer span a question answerer's start and end logits give, and the spans an
explanation of one starts from.

The answer is chosen as the Hugging Face question-answering pipeline chooses it (one window, `top_k` 1, no
impossible answer): the logits of tokens that cannot be in the answer (the question's, special tokens' but the
classifier token's, model.json's `cls_token`) are set to -10000; p_start = softmax(start), p_end = softmax(end) over
the text's tokens; the first token's p_start and p_end are then set to 0; the answer is the span first..last of those
tokens with 0 <= last - first < MAX_ANSWER_TOKENS that maximises p_start[first] * p_end[last] (its score; the first
such span in row-major order on ties). Its text runs from the start of the first token's word to the end of the last
token's word (the pipeline's `align_to_words`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from service.manifest.model_json import ANSWER_TEXTS
from service.modality.text import TextModel, TokenizedText

CONTEXT = ANSWER_TEXTS[1]  # the text of a pair that holds the answer
MAX_ANSWER_TOKENS = 15  # the pipeline's max_answer_len
EXCLUDED_LOGIT = -10000.0  # what the pipeline puts in place of a token that cannot be in the answer
Logits = Literal["both", "start", "end"]  # which of a span's logits an explanation explains


@dataclass(frozen=True)
class AnswerTarget:
    """`{"start": i, "end": j, "logits": ...}` in a request: the span of tokens i..j (None: the predicted answer's
    own first or last token) and which logits are explained: the start logit at i plus the end logit at j (both), or
    one of them."""

    first: int | None = None
    last: int | None = None
    logits: Logits = "both"


@dataclass(frozen=True)
class Answer:
    """A span of tokens `first`..`last` (indices into the text's tokens): its [start, end) characters (aligned to
    words) and its text in the text of the pair it is in (`sequence`; None: a span of special tokens only), and its
    score p_start[first] * p_end[last] (None for a span the model could not answer: outside the context, backwards
    or longer than MAX_ANSWER_TOKENS)."""

    first: int
    last: int
    start: int
    end: int
    text: str
    score: float | None
    sequence: int | None = 0


def answer_probabilities(logits: np.ndarray, tokens: TokenizedText, model: TextModel) -> tuple[np.ndarray, np.ndarray]:
    """p_start and p_end over a text's tokens (logits [tokens, 2]), the pipeline's way (see the module)."""
    kept = candidates(tokens, model)
    chances = []
    for column in (0, 1):
        values = np.where(kept, logits[:, column].astype(np.float64), EXCLUDED_LOGIT)
        exp = np.exp(values - values.max())
        found = exp / exp.sum()
        found[0] = 0.0  # the pipeline's "mask CLS": the first token never starts or ends an answer
        chances.append(found)
    return chances[0], chances[1]


def candidates(tokens: TokenizedText, model: TextModel) -> np.ndarray:
    """The tokens that take part: the context's (special tokens excepted) and the classifier token ([CLS], where a
    model trained with unanswerable questions answers "none"), as the pipeline's p_mask leaves them."""
    assert model.spec.pair is not None, "a question answerer reads a pair"
    context = model.spec.pair.index(CONTEXT)
    return np.array([(tokens.sequence_of(i) == context and not special) or token == model.cls_id
                     for i, (special, token) in enumerate(zip(tokens.special, tokens.ids, strict=True))])


def best_answer(logits: np.ndarray, tokens: TokenizedText, model: TextModel) -> Answer | None:
    """The answer of one text (logits [tokens, 2] at its own tokens); None when no token can start one."""
    start, end = answer_probabilities(logits, tokens, model)
    allowed = candidates(tokens, model)
    scores = np.outer(np.where(allowed, start, 0.0), np.where(allowed, end, 0.0))
    scores = np.tril(np.triu(scores), MAX_ANSWER_TOKENS - 1)
    first, last = np.unravel_index(int(np.argmax(scores)), scores.shape)
    if not (allowed[first] and allowed[last]):
        return None
    return span(tokens, int(first), int(last), float(scores[first, last]))


def span(tokens: TokenizedText, first: int, last: int, score: float | None) -> Answer:
    """Tokens first..last as an answer: the characters of its tokens that are not special tokens and are in the text
    of the first such token (a span that runs on into the pair's other text stops at the end of this one), from the
    start of the first one's word to the end of the last one's; an empty text at 0 when all are special."""
    inside = [i for i in range(first, last + 1) if not tokens.special[i]]
    if not inside:
        return Answer(first, last, 0, 0, "", score, None)
    sequence = tokens.sequence_of(inside[0])
    own = [i for i in inside if tokens.sequence_of(i) == sequence]
    start, end = _word_edges(tokens, own[0])[0], _word_edges(tokens, own[-1])[1]
    return Answer(first, last, start, end, tokens.source(own[0])[start:end], score, sequence)


def span_score(logits: np.ndarray, tokens: TokenizedText, model: TextModel, first: int, last: int) -> float | None:
    """p_start[first] * p_end[last] of a span the model could answer (None for one outside the candidates,
    backwards or longer than MAX_ANSWER_TOKENS)."""
    allowed = candidates(tokens, model)
    if not (allowed[first] and allowed[last]) or not 0 <= last - first < MAX_ANSWER_TOKENS:
        return None
    start, end = answer_probabilities(logits, tokens, model)
    return float(start[first] * end[last])


def _word_edges(tokens: TokenizedText, index: int) -> tuple[int, int]:
    """The [start, end) characters of the word token `index` is part of (the token's own where it has no word)."""
    word, sequence = tokens.word_ids[index], tokens.sequence_of(index)
    if word is None:
        return tokens.offsets[index]
    same = [tokens.offsets[i] for i, w in enumerate(tokens.word_ids) if w == word and tokens.sequence_of(i) == sequence]
    return min(s for s, _ in same), max(e for _, e in same)
