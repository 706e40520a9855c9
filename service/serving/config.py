"""The serving limits of one model, resolved once when it is loaded: its model.json `batching` values over the
LRP_* settings. The batcher, the routes and GET /models/{model} all read this one object."""

from __future__ import annotations

from dataclasses import dataclass

from service.serving.cpu_threads import resolve_cpu_threads
from service.settings import Settings


@dataclass(frozen=True)
class ServingConfig:
    """Batching limits and CPU threads for one model's passes; `max_queue` counts queued inputs over all keys."""

    max_batch_size: int
    max_delay_ms: float
    max_queue: int
    timeout_s: float
    cpu_threads: int
    max_batch_tokens: int

    @classmethod
    def resolve(cls, settings: Settings, max_batch_size: int | None = None, max_delay_ms: int | None = None,
                timeout_s: float | None = None, cpu_threads: int | None = None,
                max_batch_tokens: int | None = None) -> ServingConfig:
        """A model's own values (None: not set) over the service settings; CPU threads fall back to torch's."""
        return cls(
            max_batch_size=max_batch_size or settings.max_batch_size,
            max_batch_tokens=max_batch_tokens or settings.max_batch_tokens,
            max_delay_ms=float(settings.max_delay_ms if max_delay_ms is None else max_delay_ms),
            max_queue=settings.max_queue,
            timeout_s=float(timeout_s or settings.request_timeout_s),
            cpu_threads=resolve_cpu_threads(cpu_threads, settings.cpu_threads))

    def inputs_per_pass(self, tokens: int | None = None) -> int:
        """How many inputs one pass takes: max_batch_size, and for texts of at most `tokens` tokens no more than
        max_batch_tokens // tokens (one at least)."""
        if tokens is None:
            return self.max_batch_size
        return max(1, min(self.max_batch_size, self.max_batch_tokens // max(tokens, 1)))
