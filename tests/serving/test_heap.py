"""The process's heaps: objects alive at start-up frozen out of the collector's view; after image work (at most its
limit at once) the freed pages go back to the system: a trim a second after the last piece of work ends, and a live
server back within 200 MiB of idle 5 s after 8 concurrent 6000x6000 noisy PNG uploads (it kept +339 MiB before)."""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import time
import weakref

import httpx2
import numpy as np
import pytest
from PIL import Image

from service.serving import heap
from service.serving.heap import PeakWork, freeze_long_lived
from tests.support.live import start_service, stop


def test_peak_work_is_bounded_and_trims_once_after_the_last_piece_ends(monkeypatch):
    trims: list[float] = []

    def trim() -> bool:
        trims.append(time.monotonic())
        return True

    monkeypatch.setattr(heap, "trim_heap", trim)
    monkeypatch.setattr(heap, "TRIM_DELAY_S", 0.05)

    async def scenario() -> tuple[int, float]:
        work, running, most = PeakWork(2), 0, 0

        async def piece(seconds: float) -> None:
            nonlocal running, most
            async with work:
                running += 1
                most = max(most, running)
                await asyncio.sleep(seconds)
                running -= 1

        await asyncio.gather(*(piece(0.02 * (i + 1)) for i in range(5)))
        ended = time.monotonic()
        assert trims == []  # not while work runs, nor before the delay
        await asyncio.sleep(0.3)
        return most, ended

    most, ended = asyncio.run(scenario())
    assert most == 2
    assert len(trims) == 1 and trims[0] >= ended  # one trim, after the last piece, however many pieces ended


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
def test_memory_returns_after_eight_concurrent_noisy_uploads():
    bits = np.random.default_rng(0).integers(0, 2, size=(6000, 6000, 1), dtype=np.uint8) * 255
    buffer = io.BytesIO()
    Image.fromarray(np.repeat(bits, 3, axis=2), "RGB").save(buffer, format="PNG")
    upload = buffer.getvalue()
    assert len(upload) < 10 * 1024 * 1024  # under LRP_MAX_UPLOAD_BYTES: the limits accept it
    base, process = start_service()
    try:
        idle = _rss_mib(process.pid)

        async def eight() -> list[int]:
            async with httpx2.AsyncClient(base_url=base, timeout=120) as client:
                answers = await asyncio.gather(*(client.post(
                    "/explain/digits/image", files={"file": ("noise.png", upload, "image/png")}) for _ in range(8)))
            return [answer.status_code for answer in answers]

        assert asyncio.run(eight()) == [200] * 8
        time.sleep(5)
        assert _rss_mib(process.pid) - idle < 200
    finally:
        stop(process)


class Node:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


def test_objects_alive_at_the_freeze_leave_the_collector_s_view_and_garbage_does_not_get_frozen():
    kept = Node()
    garbage = Node()
    garbage_ref = weakref.ref(garbage)
    del garbage
    try:
        frozen = freeze_long_lived()
        assert frozen > 0  # (not compared with gc.get_freeze_count(): frozen objects that other threads free leave it)
        assert not any(o is kept for o in gc.get_objects())  # a full collection no longer scans it
        assert garbage_ref() is None  # collected before the freeze, not kept forever
        newer = Node()
        assert any(o is newer for o in gc.get_objects())  # objects made after the freeze are collected as usual
    finally:
        gc.unfreeze()
