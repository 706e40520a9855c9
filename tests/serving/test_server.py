"""SIGTERM drains the service: readiness turns 503, queued and running requests finish with 200, exit status 0."""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest
import uvicorn
from sklearn.datasets import load_digits

from service.serving.server import DrainingServer
from tests.support.live import output_of, start_service, stop, wait_until
from tests.support.prometheus import labels, parse

LIVENESS_S = 30  # a bound only a hang reaches


def drained_server(delay_s: float) -> tuple[DrainingServer, list[str]]:
    async def app(scope, receive, send):  # never called: only the signal logic is under test
        raise AssertionError

    calls: list[str] = []
    return DrainingServer(uvicorn.Config(app), lambda: calls.append("drain"), delay_s), calls


def tick(server: DrainingServer) -> bool:
    return asyncio.run(server.on_tick(1))


def test_sigterm_drains_first_and_exits_after_the_delay():
    server, calls = drained_server(0.2)
    server.handle_exit(signal.SIGTERM, None)
    assert calls == ["drain"]
    assert not tick(server) and not server.should_exit
    time.sleep(0.25)
    assert tick(server) and server.should_exit


def test_a_second_sigterm_exits_without_waiting_for_the_delay():
    server, calls = drained_server(3600)
    server.handle_exit(signal.SIGTERM, None)
    assert not tick(server)
    server.handle_exit(signal.SIGTERM, None)
    assert tick(server)
    assert calls == ["drain", "drain"]


def test_sigint_exits_at_once_and_a_second_one_forces():
    server, calls = drained_server(3600)
    server.handle_exit(signal.SIGINT, None)
    assert server.should_exit and not server.force_exit and calls == ["drain"]
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit


def queue_depth(base: str, model: str) -> float:
    return parse(httpx2.get(f"{base}/metrics", timeout=5).text)["lrp_queue_depth", labels(model=model)]


def explain_bodies(count: int) -> list[dict]:
    images = load_digits().images[:count].astype(int).tolist()
    return [{"inputs": [image], "target": i % 10} for i, image in enumerate(images)]


@pytest.mark.slow
def test_requests_queued_at_sigterm_all_finish_with_200_and_the_exit_is_clean():
    # A 2 s batching delay keeps all requests queued while SIGTERM arrives and the listener closes.
    base, process = start_service(LRP_MAX_DELAY_MS="2000", LRP_MAX_BATCH_SIZE="64", LRP_SHUTDOWN_DELAY_S="0")
    try:
        bodies = explain_bodies(16)
        with ThreadPoolExecutor(len(bodies)) as pool:
            sent = [pool.submit(httpx2.post, f"{base}/explain/digits", json=b, timeout=LIVENESS_S) for b in bodies]
            wait_until(lambda: queue_depth(base, "digits") >= len(bodies))
            process.send_signal(signal.SIGTERM)
            refused = False
            while not refused and not all(f.done() for f in sent):
                try:
                    httpx2.get(f"{base}/health/live", timeout=1)
                except (httpx2.ConnectError, httpx2.ReadError, httpx2.RemoteProtocolError):
                    # the listener closed while the queued requests were still waiting (a probe accepted into the
                    # backlog just before it closed is reset instead of refused)
                    refused = True
                time.sleep(0.02)
            responses = [f.result() for f in sent]
        assert refused
        assert [r.status_code for r in responses] == [200] * len(bodies)
        assert [r.json()["explanations"][0]["target"] for r in responses] == [i % 10 for i in range(len(bodies))]
        assert process.wait(timeout=LIVENESS_S) == 0
        output = output_of(process)
        assert "readiness now answers 503" in output and "Traceback" not in output
    finally:
        stop(process)


@pytest.mark.slow
def test_during_the_shutdown_delay_readiness_is_503_and_requests_are_still_served():
    base, process = start_service(LRP_SHUTDOWN_DELAY_S="2")
    try:
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + LIVENESS_S
        while (ready := httpx2.get(f"{base}/health/ready", timeout=5)).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "not_ready" and "shutting down" in ready.json()["error"]["message"]
        assert httpx2.get(f"{base}/health/live", timeout=5).status_code == 200
        answer = httpx2.post(f"{base}/explain/digits", json=explain_bodies(1)[0], timeout=LIVENESS_S)
        assert answer.status_code == 200
        assert process.wait(timeout=LIVENESS_S) == 0
    finally:
        stop(process)
