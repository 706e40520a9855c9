"""`python -m service` as a real process on a free 127.0.0.1 port, and polling, for tests with live servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import httpx2
import pytest

from tests.conftest import ROOT

STARTUP_SECONDS = 60
_LOGS: dict[int, IO[bytes]] = {}  # each started service's log file, by process id


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll `condition` every 10 ms; fail the test if it is still false after `timeout_s` (only a hang)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(command: Sequence[str] = (sys.executable, "-m", "service"), cwd: Path = ROOT,
                  **variables: str) -> tuple[str, subprocess.Popen[bytes]]:
    """Start the service (by default from the repository, with the shipped models) with extra LRP_* `variables`
    on a free port; return once it is ready."""
    port = free_port()
    env = {**os.environ, "LRP_MODELS_DIR": str(ROOT / "models"), **variables, "LRP_PORT": str(port),
           "LRP_HOST": "127.0.0.1"}
    # The log goes to a file, never to a pipe nobody reads: a full pipe would stall the server once ~64 KB of
    # access-log lines are written (seen as client timeouts after a few hundred requests).
    log = tempfile.TemporaryFile()  # noqa: SIM115  (kept open for the process's life; read by output_of)
    process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    _LOGS[process.pid] = log
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return base, process
        except httpx2.TransportError:
            pass
        assert process.poll() is None, output_of(process)
        time.sleep(0.2)
    process.kill()
    pytest.fail("the service did not become ready")


def output_of(process: subprocess.Popen[bytes]) -> str:
    """Everything the service started by `start_service` has written to stdout and stderr so far."""
    log = _LOGS[process.pid]
    log.seek(0)
    return log.read().decode(errors="replace")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the process if a test left it running."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
