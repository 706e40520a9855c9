"""`python -m service` as a real process on a free port: health, predict, the README's curl commands,
the container health check, and a clean exit on SIGTERM."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT

STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, "LRP_PORT": str(port), "LRP_HOST": "127.0.0.1", "LRP_MODELS_DIR": str(ROOT / "models")}
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{base}/health/ready", timeout=1).status_code == 200:
                break
        except httpx2.TransportError:
            pass
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else "exited"
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the service did not become ready")
    yield base, process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def test_the_process_serves_predictions(server):
    base, _ = server
    response = httpx2.post(f"{base}/predict/walkthrough", json={"inputs": [[1, 0.8, 0.2]]}, timeout=10)
    assert response.status_code == 200
    assert response.json()["predictions"][0]["logits"] == pytest.approx([1.268], abs=1e-6)


def readme_commands() -> list[str]:
    """Every curl line inside the README's ```sh blocks."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("curl ")]


def test_the_readme_has_the_examples_the_issue_asks_for():
    commands = readme_commands()
    assert any("/predict/" in c for c in commands)
    assert any("/explain/" in c and "image/png" not in c and "-o " not in c for c in commands)
    assert any("Accept: image/png" in c for c in commands)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed on this machine")
@pytest.mark.parametrize("command", readme_commands())
def test_readme_curl_commands_work_as_written(server, tmp_path, command):
    base, _ = server
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    args = [arg.replace("http://127.0.0.1:8000", base) for arg in shlex.split(command)]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    if "-o" in args:
        written = tmp_path / args[args.index("-o") + 1]
        with Image.open(written) as image:
            assert image.format == "PNG"
    else:
        assert result.stdout.startswith(b"{")


def test_the_readme_picture_is_what_the_service_draws(server):
    base, _ = server
    body = (ROOT / "docs" / "digits.json").read_bytes()
    response = httpx2.post(f"{base}/explain/digits", content=body, timeout=30,
                           headers={"Content-Type": "application/json", "Accept": "image/png"})
    with Image.open(ROOT / "docs" / "heatmap.png") as shipped:
        expected = np.asarray(shipped.convert("RGB"), dtype=np.int16)
    with Image.open(io.BytesIO(response.content)) as drawn:
        actual = np.asarray(drawn.convert("RGB"), dtype=np.int16)
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).mean() < 1.0


def test_container_health_check_passes_against_the_process(server):
    base, _ = server
    port = base.rsplit(":", 1)[1]
    env = {**os.environ, "LRP_PORT": port}
    assert subprocess.run([sys.executable, "-m", "service.healthcheck"], cwd=ROOT, env=env, timeout=30).returncode == 0
    env["LRP_PORT"] = str(free_port())
    assert subprocess.run([sys.executable, "-m", "service.healthcheck"], cwd=ROOT, env=env, timeout=30).returncode == 1


def test_sigterm_stops_the_process_cleanly(server):
    _, process = server
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught, so the exit status says SIGTERM
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    output = process.stdout.read().decode() if process.stdout else ""
    assert "loaded model 'digits'" in output and "Finished server process" in output
    assert "Traceback" not in output
