"""Token classification: each token's label, the entities consecutive labels make, and the spans an explanation of a
token classifier starts from (an entity: each of its tokens' predicted class, explained together; or one token and a
class a request names).

Entities are grouped as the Hugging Face pipeline's "simple" aggregation groups them: special tokens and label `O`
belong to none; a token continues the entity before it when its type (the label without a `B-` / `I-` prefix) is the
same and its label does not begin with `B-`; an entity's score is the mean probability of its tokens' labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

OUTSIDE = "O"


@dataclass(frozen=True)
class TokenTarget:
    """`{"token": i, "class": c}` in a request: token i of the text (as /explain lists its tokens) and class c (None:
    the token's predicted class)."""

    token: int
    cls: int | None = None


@dataclass(frozen=True)
class Entity:
    """Consecutive tokens `first`..`last` (inclusive, indices into the text's tokens) of one entity type."""

    kind: str
    first: int
    last: int
    score: float


def entity_type(label: str) -> str:
    """The type a label marks: `B-PER` and `I-PER` -> `PER`; a label without a prefix is its own type."""
    return label[2:] if label[:2] in ("B-", "I-") else label


def entities(labels: Sequence[str], scores: Sequence[float], special: Sequence[bool]) -> list[Entity]:
    """The entities of a text whose tokens were given `labels` with probabilities `scores`."""
    found: list[Entity] = []
    current: list[int] = []

    def close() -> None:
        if current:
            mean = sum(scores[i] for i in current) / len(current)
            found.append(Entity(entity_type(labels[current[0]]), current[0], current[-1], mean))
            current.clear()

    for index, (label, is_special) in enumerate(zip(labels, special, strict=True)):
        if is_special or label == OUTSIDE:
            close()
            continue
        continues = bool(current) and entity_type(labels[current[-1]]) == entity_type(label) \
            and not label.startswith("B-") and current[-1] == index - 1
        if not continues:
            close()
        current.append(index)
    close()
    return found
