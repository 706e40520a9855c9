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


Result = Predicted | Explained | ServiceError  # an error: that sample failed alone
ResultT = TypeVar("ResultT", Predicted, Explained)


def of_kind(results: Sequence[Predicted | Explained], kind: type[ResultT]) -> list[ResultT]:
    """The results, each checked to be a `kind` (a predict job's are Predicted, an explain job's Explained)."""
    checked = [result for result in results if isinstance(result, kind)]
    assert len(checked) == len(results), f"a job's results are all {kind.__name__}"
    return checked
