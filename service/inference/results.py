"""What one batched pass gives each sample, as plain data (numpy arrays and floats): every protocol's codec encodes
its answer from these, and none of them is a response body."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from service.errors import ServiceError
from service.faithfulness import Measurement


@dataclass(frozen=True)
class Predicted:
    """One instance's prediction: every output's logit and (not for a regression) probability (float32, shape
    [classes])."""

    logits: np.ndarray
    probabilities: np.ndarray | None

    @property
    def predicted_class(self) -> int:
        """The most probable class (the first of equal ones; a regression: the largest output)."""
        return int(np.argmax(self.logits if self.probabilities is None else self.probabilities))


@dataclass(frozen=True)
class Explained:
    """One instance's explanation for its target classes (one, or several explained together): the relevance shaped
    like the instance in model space (a text: one value per token of its own), its sum, the explained logit (the
    targets' logits summed) - that sum, the target's probability (one class of a model with probabilities), every
    class's logit and probability, and, when the request asked for it, the faithfulness of the relevance."""

    targets: tuple[int, ...]
    logit: float
    probability: float | None
    logits: np.ndarray
    probabilities: np.ndarray | None
    relevance: np.ndarray
    relevance_sum: float
    conservation_delta: float
    faithfulness: Measurement | None = None


@dataclass(frozen=True)
class SpanExplained:
    """One span of a token classifier's text explained: tokens `first`..`last` (indices into the text's tokens),
    each one's class explained (`targets`, together: their logits' sum is `logit`), the entity type when the span is
    a predicted entity (with its mean probability as `score`), and the relevance of every token of the text."""

    first: int
    last: int
    targets: tuple[int, ...]
    entity: str | None
    score: float | None
    logit: float
    relevance: np.ndarray
    relevance_sum: float
    conservation_delta: float


@dataclass(frozen=True)
class TokensExplained:
    """A token classifier's explanation of one text: each of its spans (none when no entity was predicted), and every
    token's logits (float32, [tokens, classes])."""

    spans: tuple[SpanExplained, ...]
    logits: np.ndarray


Answered = Predicted | Explained | TokensExplained  # what a sample that did not fail gives
Result = Answered | ServiceError  # an error: that sample failed alone
ResultT = TypeVar("ResultT", Predicted, Explained, TokensExplained)


def of_kind(results: Sequence[Answered], kind: type[ResultT]) -> list[ResultT]:
    """The results, each checked to be a `kind` (a predict job's are Predicted, an explain job's Explained, or
    TokensExplained for a token classifier)."""
    checked = [result for result in results if isinstance(result, kind)]
    assert len(checked) == len(results), f"a job's results are all {kind.__name__}"
    return checked
