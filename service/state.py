"""What the running service holds: its settings and, once loading has finished, the model registry."""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service import inference
from service.batching import BatchSettings, MicroBatcher
from service.config import Settings
from service.cpu_threads import on_cpu_threads, resolve_cpu_threads
from service.errors import NotReadyError
from service.heap import freeze_long_lived
from service.lrp import use_ieee_float32
from service.metrics import ServiceMetrics
from service.registry import ModelEntry, Registry, resolve_device

log = logging.getLogger("service")


@dataclass
class ServiceState:
    """Settings plus the registry; `registry` is None until every model has been loaded and warmed up.
    `draining` turns True on SIGTERM: readiness answers 503 while requests already sent still finish."""

    settings: Settings
    registry: Registry | None = None
    load_error: str | None = None
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)
    draining: bool = False
    metrics: ServiceMetrics = field(init=False)
    device_thread: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = ServiceMetrics(lambda: self.batchers)
        # One thread does all model work: loading, warm-up and every model's batches. Passes run one at a time
        # on the one device, and torch (OpenMP) is never driven from two threads (measured ~30% slower on CPU).
        self.device_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")

    def load(self) -> None:
        """Load every model (blocking; the app runs it on `device_thread` at start-up), then freeze the heap so
        that garbage collection under load skips it. A failure is logged and keeps the service unready with a
        message, instead of ending the process."""
        try:
            device = resolve_device(self.settings.device)
            if device.type == "cuda":
                use_ieee_float32()  # explanations on the GPU must match the CPU's
            registry = Registry.from_directory(self.settings.models_dir, device)
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

    def batch_settings(self, entry: ModelEntry) -> BatchSettings:
        """The model's batching limits: its model.json `batching` values over the LRP_* ones."""
        own = entry.spec.batching
        return BatchSettings(
            max_batch_size=(own and own.max_batch_size) or self.settings.max_batch_size,
            max_delay_ms=float(self.settings.max_delay_ms if own is None or own.max_delay_ms is None
                               else own.max_delay_ms),
            max_queue=self.settings.max_queue,
            timeout_s=(own and own.timeout_s) or float(self.settings.request_timeout_s))

    def cpu_threads(self, entry: ModelEntry) -> int:
        """Torch threads for the model's passes: model.json `batching.cpu_threads`, LRP_CPU_THREADS, or torch's."""
        own = entry.spec.batching
        return resolve_cpu_threads(own.cpu_threads if own else None, self.settings.cpu_threads)

    def batcher(self, entry: ModelEntry) -> MicroBatcher:
        """The model's micro-batcher (created on first use), with its batch settings and CPU threads."""
        found = self.batchers.get(entry.name)
        if found is None:
            run = on_cpu_threads(self.cpu_threads(entry), functools.partial(inference.run_batch, entry))
            found = self.batchers[entry.name] = MicroBatcher(
                run, self.batch_settings(entry), self.device_thread, on_batch=self.metrics.batch_observer(entry.name))
        return found

    def close(self) -> None:
        """Stop every batcher's worker loop, then the device thread."""
        for batcher in self.batchers.values():
            batcher.close()
        self.device_thread.shutdown(wait=False, cancel_futures=True)
