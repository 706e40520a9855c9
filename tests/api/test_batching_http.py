"""Concurrent requests through HTTP are batched, and each gets exactly its own answer."""

from __future__ import annotations

import asyncio
import time

import httpx2
import numpy as np
import pytest
from sklearn.datasets import load_digits

from service.api.app import create_app
from service.settings import Settings
from tests.conftest import MODELS, shipped_models
from tests.support.prometheus import Key, labels, parse

CLIENTS = 64


def _requests() -> list[dict]:
    digits = load_digits()
    rng = np.random.default_rng(0)
    bodies = []
    for i in range(CLIENTS):
        count = 1 + i % 3
        images = digits.images[rng.choice(len(digits.images), count, replace=False)].astype(int).tolist()
        targets = [int(t) for t in rng.integers(0, 10, count)]
        bodies.append({"inputs": images, "target": targets if i % 4 else None})
    return bodies


async def _post_all(app, bodies, concurrently: bool) -> list[dict]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
        async def post(body):
            response = await client.post("/explain/residual", json=body)
            assert response.status_code == 200, response.text
            return response.json()

        if concurrently:
            return list(await asyncio.gather(*(post(body) for body in bodies)))
        return [await post(body) for body in bodies]


def _scrape(app) -> dict[Key, float]:
    """GET /metrics, parsed by prometheus_client's reference parser into {(sample, labels): value}."""

    async def get() -> str:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=")
            return response.text

    return parse(asyncio.run(get()))


@pytest.mark.slow
def test_64_concurrent_explains_each_equal_the_same_request_alone():
    settings = Settings(models_dir=MODELS, max_batch_size=32, max_delay_ms=20)
    app = create_app(settings, shipped_models(settings))
    bodies = _requests()
    alone = asyncio.run(_post_all(app, bodies, concurrently=False))
    batches_alone = _scrape(app)["lrp_batch_size_count", labels(model="residual", verb="explain")]
    together = asyncio.run(_post_all(create_app(settings, shipped_models(settings)), bodies, concurrently=True))
    for body, single, batched in zip(bodies, alone, together, strict=True):
        assert len(batched["explanations"]) == len(body["inputs"])
        for one, many in zip(single["explanations"], batched["explanations"], strict=True):
            assert many["target"] == one["target"]
            # A larger float32 batch sums in another order; the round-off scales with the logit the backward pass
            # starts from (most of it is absorbed by biases here), so the bound is 1e-5 of that scale.
            expected = np.asarray(one["relevance"])
            scale = max(np.abs(expected).max(), abs(one["logit"]))
            assert np.abs(np.asarray(many["relevance"]) - expected).max() <= 1e-5 * scale
            # the logit is a float32 sum too: most of it cancels against the biases, so relative error alone is
            # not the bound (an AMD EPYC gives -0.1919959 batched against -0.1919980 alone)
            assert many["logit"] == pytest.approx(one["logit"], rel=1e-5, abs=1e-5)
    assert batches_alone == CLIENTS  # one pass per request when sent one at a time


def test_concurrent_requests_share_passes():
    settings = Settings(models_dir=MODELS, max_batch_size=32, max_delay_ms=20)
    app = create_app(settings, shipped_models(settings))
    asyncio.run(_post_all(app, _requests(), concurrently=True))
    inputs = sum(len(body["inputs"]) for body in _requests())
    found = _scrape(app)
    explain = labels(model="residual", verb="explain")
    assert found["lrp_batch_size_count", explain] < CLIENTS / 2
    assert found["lrp_batch_size_sum", explain] == inputs
    assert found["lrp_requests_total", labels(model="residual", verb="explain", status="200")] == CLIENTS
    assert found["lrp_request_duration_seconds_count", explain] == CLIENTS
    larger_than_one = found["lrp_batch_size_count", explain] - found["lrp_batch_size_bucket", explain | {("le", "1.0")}]
    assert larger_than_one >= 1
    assert found["lrp_queue_wait_seconds_count", explain] == inputs
    assert found["lrp_queue_depth", labels(model="residual")] == 0


def test_a_full_queue_answers_503_with_retry_after():
    settings = Settings(models_dir=MODELS, max_queue=2, max_delay_ms=50)
    app = create_app(settings, shipped_models(settings))

    async def scenario():
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            bodies = [{"inputs": [[1.0, 0.8, 0.2]] * 2}] * 3
            return await asyncio.gather(*(client.post("/predict/walkthrough", json=b) for b in bodies))

    responses = asyncio.run(scenario())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 503, 503]
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
    found = _scrape(app)
    assert found["lrp_rejected_requests_total", labels(model="walkthrough", reason="queue_full")] == 2
    assert found["lrp_requests_total", labels(model="walkthrough", verb="predict", status="503")] == 2


@pytest.mark.slow
def test_a_request_whose_deadline_passes_in_the_queue_answers_504(monkeypatch):
    from service import inference

    real = inference.run_batch

    def slow(entry, key, samples):
        time.sleep(1.5)
        return real(entry, key, samples)

    monkeypatch.setattr(inference, "run_batch", slow)
    settings = Settings(models_dir=MODELS, max_batch_size=1, max_delay_ms=0, request_timeout_s=1)
    app = create_app(settings, shipped_models(settings))

    async def scenario():
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            first = asyncio.ensure_future(client.post("/predict/walkthrough", json={"inputs": [[1, 0.8, 0.2]]}))
            await asyncio.sleep(0.1)
            second = await client.post("/predict/walkthrough", json={"inputs": [[1, 0.8, 0.2]]})
            return await first, second

    first, second = asyncio.run(scenario())
    assert first.status_code == 200
    assert second.status_code == 504 and second.json()["error"]["code"] == "timeout"
    found = _scrape(app)
    assert found["lrp_rejected_requests_total", labels(model="walkthrough", reason="deadline_exceeded")] == 1
