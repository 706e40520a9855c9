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
    """One instance's prediction: every class's logit and probability (float32, shape [classes])."""

    logits: np.ndarray
    probabilities: np.ndarray

    @property
    def predicted_class(self) -> int:
        """The most probable class (the first of equal ones)."""
        return int(np.argmax(self.probabilities))


@dataclass(frozen=True)
class Explained:
    """One instance's explanation for its target class: the relevance shaped like the instance in model space (a
    text: one value per token of its own), its sum, logit[target] - that sum, every class's logit and probability,
    and, when the request asked for it, the faithfulness of the relevance."""

    target: int
    logit: float
    probability: float
    logits: np.ndarray
    probabilities: np.ndarray
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
