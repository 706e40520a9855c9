"""What the running service holds: its settings, the model registry once loading has finished, the device thread
and one micro-batcher per loaded model version, and how many requests use each version now."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from service.errors import NotReadyError
from service.loader import ModelEntry, Registry, load_directory
from service.serving.batcher import BatchKey, MicroBatcher
from service.serving.cpu_threads import on_cpu_threads
from service.serving.device import device_thread, resolve_device
from service.serving.heap import PeakWork, freeze_long_lived
from service.serving.metrics import ServiceMetrics
from service.settings import Settings

log = logging.getLogger("service")



class Item(Protocol):
    """What the state knows of a batch item: its size in a padded batch (a text's token ids)."""

    @property
    def size(self) -> int: ...


KeyT = TypeVar("KeyT", bound=BatchKey)
ItemT = TypeVar("ItemT", bound=Item)
ResultT = TypeVar("ResultT")
# run_batch(entry, key, items) -> one result per item; an item's result may be its own error
RunBatch = Callable[[ModelEntry, KeyT, list[ItemT]], Sequence[ResultT | BaseException]]


@dataclass
class ServiceState(Generic[KeyT, ItemT, ResultT]):
    """Settings, the function that runs one batch on the device, and the registry: None until every model has
    been loaded and warmed up. `draining` turns True on SIGTERM: readiness answers 503 while requests already sent
    still finish. `batchers` holds each model's current version's batcher (what metrics read); a version replaced or
    deleted keeps its own batcher until its last request has its answer."""

    settings: Settings
    run_batch: RunBatch[KeyT, ItemT, ResultT]
    registry: Registry | None = None
    load_error: str | None = None
    batchers: dict[str, MicroBatcher[KeyT, ItemT, ResultT]] = field(default_factory=dict)
    draining: bool = False
    metrics: ServiceMetrics = field(init=False)
    image_work: PeakWork = field(init=False)  # at most LRP_MAX_CONCURRENT_DECODES images decoded or drawn
    device_thread: ThreadPoolExecutor = field(init=False, default_factory=device_thread)
    model_changes: asyncio.Lock = field(init=False)  # one PUT or DELETE of a model at a time
    _versions: dict[ModelEntry, MicroBatcher[KeyT, ItemT, ResultT]] = field(init=False, default_factory=dict)
    _in_use: dict[ModelEntry, int] = field(init=False, default_factory=dict)
    _released: asyncio.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = ServiceMetrics(lambda: self.batchers)
        self.image_work = PeakWork(self.settings.max_concurrent_decodes)
        self.model_changes = asyncio.Lock()
        self._released = asyncio.Condition()

    def load(self) -> None:
        """Load every model (blocking; the app runs it on `device_thread` at start-up), then freeze the heap so
        that garbage collection under load skips it. A failure is logged and keeps the service unready with a
        message, instead of ending the process."""
        try:
            registry = load_directory(self.settings.models_dir, resolve_device(self.settings.device),
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

    def is_current(self, entry: ModelEntry) -> bool:
        """Whether `entry` is the version its name serves now (not replaced, not deleted)."""
        return self.registry is not None and self.registry.serves(entry)

    def batcher(self, entry: ModelEntry) -> MicroBatcher[KeyT, ItemT, ResultT]:
        """The micro-batcher of this model version (created on first use), with its serving limits and CPU threads;
        a new version's batcher continues the refusal counts of the one it replaces."""
        found = self._versions.get(entry)
        if found is None:
            run = on_cpu_threads(entry.serving.cpu_threads, functools.partial(self.run_batch, entry))
            before = self.batchers.get(entry.name)
            found = self._versions[entry] = MicroBatcher(
                run, entry.serving, self.device_thread, on_batch=self.metrics.batch_observer(entry.name),
                stats=before.stats if before is not None else None,
                size_of=None if entry.text is None else _size)
            if self.is_current(entry):
                self.batchers[entry.name] = found
        return found

    @asynccontextmanager
    async def using(self, entry: ModelEntry) -> AsyncIterator[None]:
        """Count a request using this model version while it runs; the last request on a version that is no longer
        served closes its batcher."""
        self._in_use[entry] = self._in_use.get(entry, 0) + 1
        try:
            yield
        finally:
            self._in_use[entry] -= 1
            if not self._in_use[entry]:  # the version's last request: a waiting DELETE may go on
                del self._in_use[entry]
                if not self.is_current(entry):
                    self.retire(entry)
                async with self._released:
                    self._released.notify_all()

    async def unused(self, entry: ModelEntry) -> None:
        """Wait until no request uses this model version."""
        async with self._released:
            await self._released.wait_for(lambda: entry not in self._in_use)

    def retire(self, entry: ModelEntry) -> None:
        """Close a version's batcher once nothing uses it (a request arriving later gets a new one)."""
        if entry in self._in_use:
            return
        batcher = self._versions.pop(entry, None)
        if batcher is not None:
            batcher.close()
        if batcher is not None and self.batchers.get(entry.name) is batcher:
            del self.batchers[entry.name]

    def close(self) -> None:
        """Stop every batcher's worker loop, then the device thread."""
        for batcher in self._versions.values():
            batcher.close()
        self.device_thread.shutdown(wait=False, cancel_futures=True)


def _size(item: Item) -> int:
    """An item's size in a padded batch."""
    return item.size
