"""Connections are bounded on a live server: a connection that has sent no whole request head within
LRP_HEADER_TIMEOUT_S (idle, or sending a byte at a time: slowloris) is closed, and past LRP_MAX_CONNECTIONS open
connections requests get 503 until the idle ones are gone."""

from __future__ import annotations

import http.client
import socket
import time

import httpx2
import pytest

from tests.support.live import start_service, stop, wait_until

pytestmark = pytest.mark.slow  # a live server process
HEAD_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 30


def _closed_by_the_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes `sock` within `within_s` (recv sees the end of the stream)."""
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def server():
    base, process = start_service(LRP_HEADER_TIMEOUT_S=str(HEAD_TIMEOUT_S), LRP_MAX_CONNECTIONS=str(MAX_CONNECTIONS))
    yield base, int(base.rsplit(":", 1)[1])
    stop(process)


def test_idle_connections_are_closed_and_past_the_cap_requests_get_503_until_then(server):
    base, port = server
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS + 5)]
    try:
        time.sleep(0.2)  # every idle connection accepted
        assert httpx2.get(f"{base}/health/live", timeout=5).status_code == 503
        assert all(_closed_by_the_server(sock, HEAD_TIMEOUT_S + 4) for sock in idle)
        wait_until(lambda: httpx2.get(f"{base}/health/live", timeout=5).status_code == 200, timeout_s=10)
    finally:
        for sock in idle:
            sock.close()


def test_a_slow_header_is_closed_however_steadily_it_sends(server):
    _, port = server
    head = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        closed = False
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - started > HEAD_TIMEOUT_S + 4:
                break
        closed = closed or _closed_by_the_server(sock, 2)
        assert closed and time.monotonic() - started < HEAD_TIMEOUT_S + 6


def test_a_kept_alive_connection_serves_requests_and_is_closed_once_idle(server):
    _, port = server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        for _ in range(3):  # one connection, kept alive between the answers
            connection.request("GET", "/health/live")
            answer = connection.getresponse()
            assert answer.status == 200 and answer.read()
        assert connection.sock is not None
        assert _closed_by_the_server(connection.sock, HEAD_TIMEOUT_S + 2)  # before uvicorn's own 5 s keep-alive
    finally:
        connection.close()
