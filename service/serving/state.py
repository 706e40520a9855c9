"""What the running service holds: its settings, the model registry once loading has finished, the device thread
and one micro-batcher per model."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from service.errors import NotReadyError
from service.serving.batcher import MicroBatcher
from service.serving.cpu_threads import on_cpu_threads
from service.serving.device import device_thread, resolve_device
from service.serving.heap import freeze_long_lived
from service.serving.metrics import ServiceMetrics
from service.settings import Settings
from service.store.registry import ModelEntry, Registry

log = logging.getLogger("service")

# run_batch(entry, key, items) -> one result per item; an item's result may be its own error
RunBatch = Callable[[ModelEntry, Any, list[Any]], Sequence[Any]]


@dataclass
class ServiceState:
    """Settings, the function that runs one batch on the device, and the registry: None until every model has
    been loaded and warmed up. `draining` turns True on SIGTERM: readiness answers 503 while requests already sent
    still finish."""

    settings: Settings
    run_batch: RunBatch
    registry: Registry | None = None
    load_error: str | None = None
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)
    draining: bool = False
    metrics: ServiceMetrics = field(init=False)
    image_work: asyncio.Semaphore = field(init=False)  # at most LRP_MAX_CONCURRENT_DECODES images decoded or drawn
    device_thread: ThreadPoolExecutor = field(init=False, default_factory=device_thread)

    def __post_init__(self) -> None:
        self.metrics = ServiceMetrics(lambda: self.batchers)
        self.image_work = asyncio.Semaphore(self.settings.max_concurrent_decodes)

    def load(self) -> None:
        """Load every model (blocking; the app runs it on `device_thread` at start-up), then freeze the heap so
        that garbage collection under load skips it. A failure is logged and keeps the service unready with a
        message, instead of ending the process."""
        try:
            registry = Registry.from_directory(self.settings.models_dir, resolve_device(self.settings.device),
                                               self.settings)
        except Exception:  # a bug or a bad device must not leave the service silently unready
            log.exception("loading the models failed")
            self.load_error = "loading the models failed; see the server log"
            return
        frozen = freeze_long_lived()
        log.debug("%d long-lived objects frozen out of garbage collection", frozen)
        self.registry = registry

    def ready_registry(self) -> Registry:
        """The registry; raise NotReadyError (503) while models are still loading or when loading failed."""
        if self.registry is None:
            raise NotReadyError(self.load_error or "the service is still loading its models; retry shortly "
                                "(GET /health/ready answers 200 when it is ready)")
        return self.registry

    def check_ready(self) -> Registry:
        """The registry for the readiness probe: like `ready_registry`, but 503 once shutdown has begun."""
        if self.draining:
            raise NotReadyError("the service is shutting down; requests already sent are still answered")
        return self.ready_registry()

    def start_draining(self) -> None:
        """Shutdown has begun (SIGTERM): readiness answers 503 from now on."""
        if not self.draining:
            log.info("shutting down: readiness now answers 503; requests in flight will finish")
        self.draining = True

    def batcher(self, entry: ModelEntry) -> MicroBatcher:
        """The model's micro-batcher (created on first use), with its serving limits and CPU threads."""
        found = self.batchers.get(entry.name)
        if found is None:
            run = on_cpu_threads(entry.serving.cpu_threads, functools.partial(self.run_batch, entry))
            found = self.batchers[entry.name] = MicroBatcher(
                run, entry.serving, self.device_thread, on_batch=self.metrics.batch_observer(entry.name))
        return found

    def close(self) -> None:
        """Stop every batcher's worker loop, then the device thread."""
        for batcher in self.batchers.values():
            batcher.close()
        self.device_thread.shutdown(wait=False, cancel_futures=True)
