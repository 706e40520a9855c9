"""The stabilised division every rule shares: s = R / stab(z), stab(z) = z + eps * sign(z) with sign(0) = +1."""

from __future__ import annotations

import torch


def stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """stab(z) = z + eps * sign(z), with sign(0) = +1 for both zeros (bit-identical to computing z + eps or z - eps).

    Written as copysign(eps, z + 0.0) + z: z + 0.0 turns -0.0 into +0.0, and copysign is vectorised where
    torch.where on a boolean mask is not (about 10x faster on CPU)."""
    signed = z + 0.0
    torch.copysign(torch.full((), eps, dtype=z.dtype, device=z.device), signed, out=signed)
    return signed.add_(z)


def divide(relevance: torch.Tensor, z: torch.Tensor, eps: float) -> torch.Tensor:
    """s = R / stab(z); with eps = 0 (LRP-0) a zero denominator gives s = 0 instead of inf/nan."""
    if eps == 0:
        return torch.where(z == 0, torch.zeros_like(relevance), relevance / z)
    denominator = stabilize(z, eps)
    if denominator.shape == torch.Size(torch.broadcast_shapes(relevance.shape, denominator.shape)):  # type: ignore[no-untyped-call]
        return torch.div(relevance, denominator, out=denominator)
    return relevance / denominator
