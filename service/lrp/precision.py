"""Exact float32 on CUDA: TensorFloat-32 (10-bit mantissa) off for matmuls and cuDNN, so GPU relevance matches CPU."""

from __future__ import annotations

import torch


def use_ieee_float32() -> None:
    """Make float32 matmuls and convolutions on CUDA full IEEE precision (no TF32), process-wide.

    Uses the legacy `allow_tf32` flags only: torch.export (which every capture runs) saves and restores cuDNN's flags
    through them, and in torch 2.13 reading them fails once the fp32_precision API has set cuDNN's precision. Mixing
    the two APIs is an error too, so nothing here touches fp32_precision directly.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
