"""What each sample's explanation starts from: the argmax, one class for all, or per sample a class, several classes
(their logits explained together: LRP's backward is linear in its seed, so their relevance is the sum of each one's),
or None (the argmax); every index range-checked; and the seed built from them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from service.lrp.exceptions import ExplanationInputError

Classes = int | Sequence[int] | None  # one sample's: a class, several classes, or None (the argmax)
Target = int | Sequence[Classes] | torch.Tensor | None


def selection_for(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """A 0/1 mask [batch, classes] of the classes each sample explains: None -> the argmax, an int -> that class
    for all, a sequence -> per sample an int, a sequence of distinct ints, or None; range-checked."""
    batch, classes = logits.shape
    if target is None:
        per_sample: list[Classes] = [None] * batch
    elif isinstance(target, bool):
        raise ExplanationInputError("target must be an int class index, not a bool")
    elif isinstance(target, int):
        per_sample = [target] * batch
    else:
        per_sample = target.tolist() if isinstance(target, torch.Tensor) else list(target)
        if len(per_sample) != batch:
            raise ExplanationInputError(
                f"target must be one int (or None for the argmax) per sample ({batch} samples), got {per_sample!r}")
    argmax = logits.argmax(dim=1).tolist()
    mask = torch.zeros(batch, classes, dtype=logits.dtype, device=logits.device)
    for row, (chosen, best) in enumerate(zip(per_sample, argmax, strict=True)):
        indices = _indices(chosen, best, classes)
        mask[row, indices] = 1
    return mask


def _indices(chosen: Classes, best: int, classes: int) -> list[int]:
    if chosen is None:
        return [best]
    values = [chosen] if isinstance(chosen, int) else list(chosen) if isinstance(chosen, Sequence) else [chosen]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ExplanationInputError(f"target must be one int (or None for the argmax) per sample, or per sample a "
                                    f"non-empty list of ints to explain together; got {chosen!r}")
    if len(set(values)) != len(values):
        raise ExplanationInputError(f"a sample's target lists a class twice: {values}")
    for value in values:
        if not 0 <= value < classes:
            raise ExplanationInputError(
                f"target {value} is out of range; the model has {classes} classes (0..{classes - 1})")
    return values


def targets_for(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """One class index per sample (the argmax for None); a sample that names several classes is refused."""
    mask = selection_for(target, logits)
    if bool((mask.sum(1) > 1).any()):
        raise ExplanationInputError("this takes one class per sample, not several")
    return mask.argmax(dim=1)


def seed_for(logits: torch.Tensor, selected: torch.Tensor, out: torch.Tensor, per_position: bool,
             output_relevance: torch.Tensor | None = None) -> torch.Tensor:
    """The relevance the backward pass starts from, shaped like the graph's output `out`: the selected logits (zero
    elsewhere, an unselected logit of inf included), or `output_relevance` (the logits' shape) when given; a
    [batch, tokens, classes] output gets it at its last token, or (`per_position`) everywhere, unflattened."""
    seed = torch.where(selected.bool(), logits, 0.0)
    if output_relevance is not None:
        if output_relevance.shape != logits.shape:
            raise ExplanationInputError(f"output_relevance must have the logits' shape {tuple(logits.shape)}, got "
                                        f"{tuple(output_relevance.shape)}")
        seed = output_relevance.to(logits)
    if out.dim() != 3:
        return seed
    if per_position:
        return seed.reshape(out.shape)
    last = torch.tensor([out.shape[1] - 1], device=out.device)
    return torch.zeros_like(out).index_copy_(1, last, seed[:, None])
