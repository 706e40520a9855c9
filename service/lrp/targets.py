"""The target class of each sample: the argmax, one index for all, or one per sample, range-checked."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from service.lrp.exceptions import ExplanationInputError

Target = int | Sequence[int | None] | torch.Tensor | None


def targets_for(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """One class index per sample: argmax for None, one int for all, or one per sample; range-checked."""
    batch, classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, bool):
        raise ExplanationInputError("target must be an int class index, not a bool")
    if isinstance(target, int):
        chosen = torch.full((batch,), target, dtype=torch.long, device=logits.device)
    else:
        values = target.tolist() if isinstance(target, torch.Tensor) else list(target)
        if len(values) != batch or any(isinstance(v, bool) or not isinstance(v, int | None) for v in values):
            raise ExplanationInputError(
                f"target must be one int (or None for the argmax) per sample ({batch} samples), got {values!r}")
        argmax = logits.argmax(dim=1).tolist()
        chosen = torch.tensor([a if v is None else v for v, a in zip(values, argmax, strict=True)],
                              dtype=torch.long, device=logits.device)
    bad = chosen[(chosen < 0) | (chosen >= classes)]
    if bad.numel():
        raise ExplanationInputError(
            f"target {bad[0].item()} is out of range; the model has {classes} classes (0..{classes - 1})")
    return chosen
