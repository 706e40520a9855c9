"""The micro-batcher with fake batch functions: flushing, ordering, backpressure, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from service.serving.batcher import BatchRecord, DeadlineExceededError, MicroBatcher, QueueFullError
from service.serving.config import ServingConfig

LIVENESS_S = 10  # a bound that only a hang reaches; not a speed measurement


def limits(max_batch_size: int, max_delay_ms: float, max_queue: int = 1024, timeout_s: float = 30.0,
           max_batch_tokens: int = 16384) -> ServingConfig:
    """Batching limits for a test (the CPU thread count does not concern the batcher)."""
    return ServingConfig(max_batch_size, max_delay_ms, max_queue, timeout_s, cpu_threads=1,
                         max_batch_tokens=max_batch_tokens)


class Recorder:
    """A batch function that records every batch and answers (key, item * 10) per item."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[tuple[object, list[object]]] = []
        self.gate = gate
        self.started = threading.Event()

    def __call__(self, key, items):
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(LIVENESS_S)
        self.batches.append((key, list(items)))
        return [item if isinstance(item, Exception) else (key, item * 10) for item in items]


async def occupied(batcher, recorder):
    """Submit item 1 under key "k"; return its future once its batch runs, held by the recorder's gate."""
    running = asyncio.ensure_future(batcher.submit("k", [1]))
    await asyncio.to_thread(recorder.started.wait, LIVENESS_S)
    return running


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, LIVENESS_S))


def test_a_full_batch_runs_without_waiting_for_the_delay():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, limits(max_batch_size=4, max_delay_ms=60_000))

    async def scenario():
        return await asyncio.gather(*(batcher.submit("k", [i]) for i in range(4)))

    assert run(scenario()) == [[("k", 0)], [("k", 10)], [("k", 20)], [("k", 30)]]
    assert [len(items) for _, items in recorder.batches] == [4]


def test_a_partial_batch_runs_after_the_delay():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, limits(max_batch_size=100, max_delay_ms=20))

    async def scenario():
        return await asyncio.gather(*(batcher.submit("k", [i]) for i in range(3)))

    assert run(scenario()) == [[("k", 0)], [("k", 10)], [("k", 20)]]
    assert recorder.batches == [("k", [0, 1, 2])]


def test_keys_never_share_a_batch():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, limits(max_batch_size=8, max_delay_ms=10))

    async def scenario():
        return await asyncio.gather(batcher.submit("a", [1]), batcher.submit("b", [2]), batcher.submit("a", [3]))

    assert run(scenario()) == [[("a", 10)], [("b", 20)], [("a", 30)]]
    assert sorted(recorder.batches) == [("a", [1, 3]), ("b", [2])]


def test_requests_are_split_and_merged_across_batches():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, limits(max_batch_size=4, max_delay_ms=10))

    async def scenario():
        return await asyncio.gather(batcher.submit("k", [100]), batcher.submit("k", list(range(6))))

    single, several = run(scenario())
    assert single == [("k", 1000)] and several == [("k", i * 10) for i in range(6)]
    assert [len(items) for _, items in recorder.batches] == [4, 3]


def test_every_caller_gets_its_own_results_under_random_arrival():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, limits(max_batch_size=8, max_delay_ms=2))
    rng = random.Random(0)
    plans = [(rng.choice("xy"), [rng.randrange(1000) for _ in range(rng.randint(1, 5))], rng.random() / 100)
             for _ in range(150)]

    async def one(key, items, pause):
        await asyncio.sleep(pause)
        return await batcher.submit(key, items)

    async def scenario():
        return await asyncio.gather(*(one(*plan) for plan in plans))

    for (key, items, _), result in zip(plans, run(scenario()), strict=True):
        assert result == [(key, item * 10) for item in items]
    assert max(len(items) for _, items in recorder.batches) <= 8
    assert len(recorder.batches) < len(plans)  # requests were merged
    assert sum(len(items) for _, items in recorder.batches) == sum(len(items) for _, items, _ in plans)


def test_a_full_queue_refuses_at_once():
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = MicroBatcher(recorder, limits(max_batch_size=1, max_delay_ms=0, max_queue=2))

    async def scenario():
        running = await occupied(batcher, recorder)  # the first batch is running, the queue is empty
        queued = asyncio.ensure_future(batcher.submit("k", [2, 3]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="2 samples are queued"):
            await batcher.submit("k", [4])
        gate.set()
        return await running, await queued

    assert run(scenario()) == ([("k", 10)], [("k", 20), ("k", 30)])
    assert batcher.stats.rejected == 1


def test_a_request_past_its_deadline_fails_and_is_not_run():
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = MicroBatcher(recorder, limits(max_batch_size=1, max_delay_ms=0, timeout_s=0.01))

    async def scenario():
        running = await occupied(batcher, recorder)
        late = asyncio.ensure_future(batcher.submit("k", [2]))
        await asyncio.sleep(0.05)
        gate.set()
        assert await running == [("k", 10)]
        with pytest.raises(DeadlineExceededError):
            await late

    run(scenario())
    assert recorder.batches == [("k", [1])]
    assert batcher.stats.expired == 1


def test_a_cancelled_request_is_dropped_from_its_batch():
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = MicroBatcher(recorder, limits(max_batch_size=4, max_delay_ms=0))

    async def scenario():
        running = await occupied(batcher, recorder)
        gone = asyncio.ensure_future(batcher.submit("k", [2]))
        kept = asyncio.ensure_future(batcher.submit("k", [3]))
        await asyncio.sleep(0)
        gone.cancel()
        gate.set()
        return await running, await kept

    assert run(scenario()) == ([("k", 10)], [("k", 30)])
    assert recorder.batches == [("k", [1]), ("k", [3])]
    assert batcher.queued == 0
    assert batcher.stats.cancelled == 1


def test_a_failing_sample_fails_alone():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, limits(max_batch_size=8, max_delay_ms=10))
    bad = ValueError("sample 2 is not finite")

    async def scenario():
        return await asyncio.gather(batcher.submit("k", [1]), batcher.submit("k", [bad, 5]),
                                    batcher.submit("k", [3]), return_exceptions=True)

    first, second, third = run(scenario())
    assert first == [("k", 10)] and third == [("k", 30)]
    assert second is bad
    assert len(recorder.batches) == 1


def test_a_batch_function_that_raises_fails_that_batch_only():
    calls = []

    def flaky(key, items):
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("device error")
        return [item * 10 for item in items]

    batcher = MicroBatcher(flaky, limits(max_batch_size=2, max_delay_ms=0))

    async def scenario():
        first = await asyncio.gather(batcher.submit("k", [1]), return_exceptions=True)
        second = await batcher.submit("k", [2])
        return first, second

    (failed,), second = run(scenario())
    assert isinstance(failed, RuntimeError) and second == [20]


def test_each_batch_is_reported_with_its_queue_waits_and_run_time():
    gate = threading.Event()
    recorder = Recorder(gate)
    records: list[BatchRecord] = []
    batcher = MicroBatcher(recorder, limits(max_batch_size=4, max_delay_ms=0), on_batch=records.append)

    async def scenario():
        running = await occupied(batcher, recorder)
        waiting = asyncio.ensure_future(batcher.submit("k", [2, 3]))
        await asyncio.sleep(0.05)  # the second batch waits behind the gated first one at least this long
        gate.set()
        return await running, await waiting

    assert run(scenario()) == ([("k", 10)], [("k", 20), ("k", 30)])
    assert [(r.key, r.size) for r in records] == [("k", 1), ("k", 2)]
    first, second = records
    assert first.run_seconds >= 0.05 > max(first.queue_waits)  # the gate held the first batch while it ran
    assert min(second.queue_waits) >= 0.05


def test_sized_samples_fill_a_batch_up_to_the_token_budget_padded_to_the_largest():
    """Sizes 3, 3, 4 fit 12 tokens as 3 x 4; a fourth (size 2) would make 4 x 4 = 16: it starts the next batch."""
    recorder = Recorder()
    batcher = MicroBatcher(recorder, limits(max_batch_size=8, max_delay_ms=50, max_batch_tokens=12), size_of=int)

    async def scenario():
        return await asyncio.gather(*(batcher.submit("k", [size]) for size in (3, 3, 4, 2)))

    assert run(scenario()) == [[("k", 30)], [("k", 30)], [("k", 40)], [("k", 20)]]
    assert [items for _, items in recorder.batches] == [[3, 3, 4], [2]]


def test_a_sample_over_the_token_budget_runs_alone():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, limits(max_batch_size=8, max_delay_ms=50, max_batch_tokens=10), size_of=int)

    async def scenario():
        return await asyncio.gather(*(batcher.submit("k", [size]) for size in (2, 30, 2, 2)))

    assert run(scenario()) == [[("k", 20)], [("k", 300)], [("k", 20)], [("k", 20)]]
    assert [items for _, items in recorder.batches] == [[2], [30], [2, 2]]


def test_without_sizes_the_budget_does_not_apply():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, limits(max_batch_size=4, max_delay_ms=60_000, max_batch_tokens=1))

    async def scenario():
        return await asyncio.gather(*(batcher.submit("k", [100 + i]) for i in range(4)))

    run(scenario())
    assert [len(items) for _, items in recorder.batches] == [4]
