"""How many CPU threads torch uses for one model's passes.

A small model gains little from torch's intra-op threads, and between passes OpenMP keeps them spinning for
a few milliseconds, taking the cores the event loop needs for HTTP. Such a model runs better on one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

TORCH_DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice (one per core), read before anyone changes it

P = ParamSpec("P")
R = TypeVar("R")


def resolve_cpu_threads(model_setting: int | None, service_setting: int) -> int:
    """The model's `batching.cpu_threads`, else LRP_CPU_THREADS, else (0) torch's default."""
    return model_setting or service_setting or TORCH_DEFAULT_THREADS


def on_cpu_threads(count: int, run: Callable[P, R]) -> Callable[P, R]:
    """`run`, made to set the calling thread's torch intra-op thread count to `count` before each call."""

    def threaded(*args: P.args, **kwargs: P.kwargs) -> R:
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
        return run(*args, **kwargs)

    return threaded
