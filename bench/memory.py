"""Memory and time of the worst uploads the limits accept, sent to /explain/digits/image with the default overlay, by
1 client and then by 8 at once: a flat RGB PNG just under LRP_MAX_IMAGE_PIXELS (a few kilobytes on the wire), and
(`--noisy`) a 6000x6000 RGB PNG of black and white noise (9.6 MiB, just under LRP_MAX_UPLOAD_BYTES: the most pixels
that cannot be compressed away). Prints the server's resident memory (idle, peak, 5 s after) and each request's
latency. Run: `.venv/bin/python -m bench.memory [--noisy]` (starts `python -m service` on a free 127.0.0.1 port
with the default limits)."""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import threading
import time
from pathlib import Path

import httpx2
import numpy as np
from PIL import Image

from tests.support.live import start_service, stop  # the same start-up as the live tests

DEFAULT_PIXELS = 40_000_000  # LRP_MAX_IMAGE_PIXELS's default
NOISY_SIDE = 6000  # 36 MP of noise: 9.6 MiB as PNG, under LRP_MAX_UPLOAD_BYTES's 10 MiB
AFTER_S = 5


def worst_upload(pixels: int) -> bytes:
    """The largest square RGB PNG under `pixels`, flat so that it compresses to almost nothing."""
    side = math.isqrt(pixels)
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 90, 90)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def noisy_upload(side: int) -> bytes:
    """A side x side RGB PNG whose pixels are black or white at random (seeded)."""
    bits = np.random.default_rng(0).integers(0, 2, size=(side, side, 1), dtype=np.uint8) * 255
    buffer = io.BytesIO()
    Image.fromarray(np.repeat(bits, 3, axis=2), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def rss_mib(pid: int) -> float:
    """The process's resident set size now, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class PeakSampler:
    """Samples a process's RSS every 10 ms in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def send(base: str, body: bytes, clients: int) -> list[tuple[int, float]]:
    async with httpx2.AsyncClient(base_url=base, timeout=120) as client:
        async def one() -> tuple[int, float]:
            started = time.perf_counter()
            response = await client.post("/explain/digits/image", files={"file": ("worst.png", body, "image/png")})
            return response.status_code, time.perf_counter() - started

        return list(await asyncio.gather(*(one() for _ in range(clients))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--noisy", action="store_true", help="6000x6000 noise instead of a flat image")
    args = parser.parse_args()
    body = noisy_upload(NOISY_SIDE) if args.noisy else worst_upload(DEFAULT_PIXELS)
    base, process = start_service()
    try:
        idle = rss_mib(process.pid)
        side = NOISY_SIDE if args.noisy else math.isqrt(DEFAULT_PIXELS)
        print(f"upload: {len(body)} bytes, {side}^2 RGB pixels; server idle RSS {idle:.0f} MiB")
        print("| clients | statuses | latency max s | peak RSS MiB | peak above idle MiB | "
              f"{AFTER_S} s after, above idle MiB |")
        print("|---|---|---|---|---|---|")
        for clients in args.clients:
            with PeakSampler(process.pid) as sampler:
                results = asyncio.run(send(base, body, clients))
            time.sleep(AFTER_S)
            after = rss_mib(process.pid)
            statuses = ",".join(sorted({str(status) for status, _ in results}))
            print(f"| {clients} | {statuses} | {max(t for _, t in results):.2f} | {sampler.peak:.0f} | "
                  f"{sampler.peak - idle:.0f} | {after - idle:.0f} |")
    finally:
        stop(process)


if __name__ == "__main__":
    main()
