"""A client that goes away while its request is queued is dropped: its inputs never reach the model."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from starlette.requests import Request

from service import inference
from service.api.app import create_app
from service.api.disconnect import unless_disconnected
from service.errors import ClientDisconnectedError
from service.settings import Settings
from tests.conftest import MODELS, shipped_models
from tests.support.live import wait_until

pytestmark = pytest.mark.slow  # a live server process
LIVENESS_S = 10  # a bound only a hang reaches


def request_with(receive: Callable) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/explain/m", "headers": [], "query_string": b""},
                   receive)


def test_the_result_is_returned_while_the_client_stays():
    async def never_disconnects():
        await asyncio.Event().wait()

    async def work():
        await asyncio.sleep(0.01)
        return 42

    assert asyncio.run(unless_disconnected(request_with(never_disconnects), work())) == 42


def test_a_disconnect_cancels_the_work_and_raises():
    cancelled = []

    async def disconnects():
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    async def work():
        try:
            await asyncio.sleep(LIVENESS_S)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def scenario():
        with pytest.raises(ClientDisconnectedError, match="disconnected from POST /explain/m"):
            await unless_disconnected(request_with(disconnects), work())
        await asyncio.sleep(0)  # let the cancellation reach the work

    asyncio.run(scenario())
    assert cancelled == [True]


def test_an_error_of_the_work_reaches_the_caller():
    async def never_disconnects():
        await asyncio.Event().wait()

    async def work():
        raise ValueError("bad sample")

    with pytest.raises(ValueError, match="bad sample"):
        asyncio.run(unless_disconnected(request_with(never_disconnects), work()))


@pytest.fixture
def gated_server(registry, monkeypatch) -> Iterator[tuple[int, object, list, threading.Event, threading.Event]]:
    """uvicorn on 127.0.0.1 in a thread; the first batch waits for `gate`; every batch's inputs are recorded."""
    seen: list[list[float]] = []
    gate, running = threading.Event(), threading.Event()
    real = inference.run_batch

    def gated(entry, key, samples):
        seen.extend(s.x.tolist() for s in samples)
        running.set()
        assert gate.wait(LIVENESS_S)
        return real(entry, key, samples)

    monkeypatch.setattr(inference, "run_batch", gated)
    settings = Settings(models_dir=MODELS, max_batch_size=1, max_delay_ms=0)
    app = create_app(settings, shipped_models(settings))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    wait_until(lambda: server.started)
    try:
        yield sock.getsockname()[1], app.state.service, seen, gate, running
    finally:
        gate.set()
        server.should_exit = True
        thread.join(LIVENESS_S)
        sock.close()


def post(port: int, body: dict) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=LIVENESS_S)
    connection.request("POST", "/predict/walkthrough", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_a_client_that_disconnects_while_queued_never_reaches_the_model(gated_server):
    port, state, seen, gate, running = gated_server
    first: list = []
    sender = threading.Thread(target=lambda: first.append(post(port, {"inputs": [[1.0, 0.5, 0.25]]})))
    sender.start()
    assert running.wait(LIVENESS_S)  # the first request's batch holds the worker

    body = json.dumps({"inputs": [[0.25, 0.5, 0.75]]}).encode()
    leaving = socket.create_connection(("127.0.0.1", port))
    leaving.sendall(b"POST /predict/walkthrough HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    batcher = state.batchers["walkthrough"]
    wait_until(lambda: batcher.queued == 1)
    leaving.close()
    wait_until(lambda: batcher.stats.cancelled == 1)

    gate.set()
    sender.join(LIVENESS_S)
    assert first[0][0] == 200
    assert post(port, {"inputs": [[0.0, 0.0, 1.0]]})[0] == 200  # the service goes on as before
    assert seen == [[1.0, 0.5, 0.25], [0.0, 0.0, 1.0]]
    assert batcher.queued == 0
