"""Exact float32 on CUDA: TensorFloat-32 (10-bit mantissa) off for matmuls and cuDNN, so GPU relevance matches CPU."""

from __future__ import annotations

import torch


def use_ieee_float32() -> None:
    """Make float32 matmuls and convolutions on CUDA full IEEE precision (no TF32), process-wide.

    Uses the fp32_precision API only: mixing it with the legacy `allow_tf32` flags is an error in torch 2.9+.
    """
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.fp32_precision = "ieee"
