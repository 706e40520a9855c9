"""A generic asyncio micro-batcher: concurrent requests become few batched calls (knows nothing of torch/HTTP).

Samples queue per key. A batch runs when it holds `max_batch_size` samples (or, with a `size_of` for the samples,
when one more would take n x the largest size past `max_batch_tokens`) or when its oldest sample has waited
`max_delay_ms`; it runs in a worker thread, and every caller gets exactly the results of its own samples. A request
of several samples may be split across batches and shares batches with other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from service.serving.config import ServingConfig


class BatchKey(Protocol):
    """What samples share a batch under: hashable, and naming the verb its passes serve (the metrics' label)."""

    @property
    def verb(self) -> str: ...

    def __hash__(self) -> int: ...


KeyT = TypeVar("KeyT", bound=BatchKey)
KeyT_co = TypeVar("KeyT_co", bound=BatchKey, covariant=True)
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
# run(key, items) -> one result per item, in order; an item's entry may be an exception (that item failed alone)
BatchFunction = Callable[[KeyT, list[ItemT]], Sequence[ResultT | BaseException]]


IDLE_EXIT_S = 60.0  # a key's loop ends after this long without work


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; True when it was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=max(timeout, 0.0))
        return True
    return False


class QueueFullError(Exception):
    """The queue holds `max_queue` samples already: retry later."""


class DeadlineExceededError(Exception):
    """The request waited in the queue past its deadline and was not run."""


@dataclass
class _Request(Generic[ItemT, ResultT]):
    items: list[ItemT]
    future: asyncio.Future[list[ResultT]]
    deadline: float
    results: dict[int, ResultT] = field(default_factory=dict)  # by item index, until every item has its result

    @property
    def abandoned(self) -> bool:
        return self.future.done()


@dataclass
class _Queued(Generic[ItemT, ResultT]):
    request: _Request[ItemT, ResultT]
    index: int
    arrived: float


@dataclass
class BatchStats:
    """Counters for metrics: requests refused (queue full), expired (deadline) or cancelled (client gone)."""

    rejected: int = 0
    expired: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class BatchRecord(Generic[KeyT_co]):
    """One batch that ran: its key, each sample's wait in the queue and the batch function's run time (seconds)."""

    key: KeyT_co
    queue_waits: list[float]
    run_seconds: float

    @property
    def size(self) -> int:
        return len(self.queue_waits)


class MicroBatcher(Generic[KeyT, ItemT, ResultT]):
    """Queues items per key and runs them through `run` in batches on one worker thread."""

    def __init__(self, run: BatchFunction[KeyT, ItemT, ResultT], settings: ServingConfig,
                 executor: Executor | None = None, on_batch: Callable[[BatchRecord[KeyT]], None] | None = None,
                 stats: BatchStats | None = None, size_of: Callable[[ItemT], int] | None = None) -> None:
        self._run = run
        self.settings = settings
        self._size_of = size_of  # a sample's size (a text's tokens): batches are padded to their largest
        self._owns_executor = executor is None  # a shared executor is shut down by its owner
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
        self._queues: dict[KeyT, deque[_Queued[ItemT, ResultT]]] = {}
        self._wakeups: dict[KeyT, asyncio.Event] = {}
        self._workers: dict[KeyT, asyncio.Task[None]] = {}
        self._queued = 0
        self._on_batch = on_batch
        self.stats = stats or BatchStats()  # shared with a batcher this one replaces: the counts go on

    @property
    def queued(self) -> int:
        """Samples waiting (not yet running) over all keys."""
        return self._queued

    async def submit(self, key: KeyT, items: Sequence[ItemT]) -> list[ResultT]:
        """The results for `items`, in order. Raises QueueFullError at once when the queue is full,
        DeadlineExceededError when the deadline passes while queued, or the first failing item's exception."""
        if not items:
            return []
        if self._queued + len(items) > self.settings.max_queue:
            self.stats.rejected += 1
            raise QueueFullError(f"{self._queued} samples are queued (limit {self.settings.max_queue})")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        request: _Request[ItemT, ResultT] = _Request(list(items), loop.create_future(), now + self.settings.timeout_s)
        queue = self._queues.setdefault(key, deque())
        queue.extend(_Queued(request, i, now) for i in range(len(items)))
        self._queued += len(items)
        self._wakeups.setdefault(key, asyncio.Event()).set()
        if key not in self._workers or self._workers[key].done():
            self._workers[key] = loop.create_task(self._work(key))
        try:
            return await request.future
        except asyncio.CancelledError:
            if request.future.cancelled() or not request.future.done():  # it had no answer yet
                self.stats.cancelled += 1
                request.future.cancel()  # its queued samples are dropped when a batch is formed
            raise

    async def _work(self, key: KeyT) -> None:
        """One loop per key: wait for a full batch or for the oldest sample's delay to pass, then run it."""
        queue, wakeup = self._queues[key], self._wakeups[key]
        delay = self.settings.max_delay_ms / 1000
        while True:
            self._drop_dead(queue)
            if not queue:
                wakeup.clear()
                if not await _wait(wakeup, IDLE_EXIT_S) and not queue:
                    return  # idle: submit() starts a new loop when work arrives
                continue
            due = queue[0].arrived + delay
            count = self._batch_length(queue)
            if count == len(queue) and count < self.settings.max_batch_size and time.monotonic() < due:
                wakeup.clear()
                await _wait(wakeup, due - time.monotonic())
                continue
            batch = [queue.popleft() for _ in range(count)]
            self._queued -= len(batch)
            await self._run_batch(key, batch)

    def _batch_length(self, queue: deque[_Queued[ItemT, ResultT]]) -> int:
        """How many samples from the front make the next batch: at most max_batch_size, and with sizes, as many as
        keep n x the largest within max_batch_tokens (one at least)."""
        most = min(len(queue), self.settings.max_batch_size)
        if self._size_of is None:
            return most
        largest = 0
        for count, sample in enumerate(itertools.islice(queue, most)):
            largest = max(largest, self._size_of(sample.request.items[sample.index]))
            if count and (count + 1) * largest > self.settings.max_batch_tokens:
                return count
        return most

    def _drop_dead(self, queue: deque[_Queued[ItemT, ResultT]]) -> None:
        """Remove samples of cancelled requests and fail the requests whose deadline has passed."""
        now = time.monotonic()
        kept: deque[_Queued[ItemT, ResultT]] = deque()
        while queue:
            sample = queue.popleft()
            request = sample.request
            if not request.abandoned and now > request.deadline:
                self.stats.expired += 1
                request.future.set_exception(DeadlineExceededError(
                    f"the request waited longer than its {self.settings.timeout_s:g} s deadline"))
            if request.abandoned:
                self._queued -= 1
                continue
            kept.append(sample)
        queue.extend(kept)

    async def _run_batch(self, key: KeyT, batch: list[_Queued[ItemT, ResultT]]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        waits = [started - s.arrived for s in batch]
        items = [s.request.items[s.index] for s in batch]
        results: Sequence[ResultT | BaseException]
        try:
            results = await loop.run_in_executor(self._executor, self._run, key, items)
            if len(results) != len(items):
                raise RuntimeError(f"the batch function returned {len(results)} results for {len(items)} items")
        except Exception as error:  # the whole batch failed: every sample in it fails with that error
            results = [error] * len(items)
        if self._on_batch is not None:
            self._on_batch(BatchRecord(key, waits, time.monotonic() - started))
        for sample, result in zip(batch, results, strict=True):
            request = sample.request
            if request.abandoned:
                continue
            if isinstance(result, BaseException):
                request.future.set_exception(result)
                continue
            request.results[sample.index] = result
            if len(request.results) == len(request.items):
                request.future.set_result([request.results[i] for i in range(len(request.items))])

    def close(self) -> None:
        """Stop the workers and, unless it was given, the thread pool (queued requests are cancelled)."""
        for task in self._workers.values():
            task.cancel()
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
