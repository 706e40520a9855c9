"""The serving device and the one thread that drives it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from service.lrp import use_ieee_float32


def resolve_device(setting: str) -> torch.device:
    """`auto`: the first GPU when CUDA is available, else the CPU; `cuda`/`cuda:N` must exist. On CUDA, float32
    matmuls and convolutions are made full IEEE precision (no TF32), so GPU relevance matches the CPU's."""
    if setting == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(setting)
        if device.type == "cuda" and (not torch.cuda.is_available()
                                      or (device.index or 0) >= torch.cuda.device_count()):
            raise ValueError(f"LRP_DEVICE={setting} but that CUDA device is not available; use auto or cpu")
    if device.type == "cuda":
        use_ieee_float32()
    return device


def device_thread() -> ThreadPoolExecutor:
    """The one thread for all model work: loading, warm-up and every model's batches. Passes run one at a time on
    the one device, and torch (OpenMP) is never driven from two threads (measured ~30% slower on CPU)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")
