"""The pipeline's asynchronous stages: image decoding and drawing share LRP_MAX_CONCURRENT_DECODES slots."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import httpx2
from PIL import Image

from service.api.app import create_app
from service.modality import instances as inputs
from service.settings import Settings
from tests.conftest import MODELS, shipped_models


def test_no_more_images_are_decoded_at_once_than_the_setting_allows(monkeypatch):
    running, most = 0, 0
    lock = threading.Lock()
    real = inputs.decode_upload

    def counted(*args, **kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)  # long enough for the other requests to arrive while this one decodes
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(inputs, "decode_upload", counted)
    settings = Settings(models_dir=MODELS, max_concurrent_decodes=2)
    app = create_app(settings, shipped_models(settings))
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 100).save(buffer, format="PNG")

    async def six_uploads() -> list[int]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            responses = await asyncio.gather(*(client.post(
                "/predict/digits/image", files={"file": ("a.png", buffer.getvalue(), "image/png")})
                for _ in range(6)))
        return [r.status_code for r in responses]

    assert asyncio.run(six_uploads()) == [200] * 6
    assert most == 2


def test_texts_are_tokenized_off_the_event_loop_however_short(monkeypatch):
    """A tokenizer's regular expressions may run long: even a one-word text is tokenized in a worker thread, so the
    event loop (and /health/live) never waits on it."""
    threads: list[int] = []
    real = inputs.decode_texts

    def recorded(*args, **kwargs):
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(inputs, "decode_texts", recorded)
    app = create_app(Settings(models_dir=MODELS), shipped_models())

    async def one_short_text() -> tuple[int, int]:
        loop_thread = threading.get_ident()
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            answer = await client.post("/predict/sentiment", json={"inputs": ["good"]})
        return answer.status_code, loop_thread

    status, loop_thread = asyncio.run(one_short_text())
    assert status == 200 and threads and loop_thread not in threads
