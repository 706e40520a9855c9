"""`python -m service` as a real process on a free port: health, predict, the README's curl commands,
the container health check, and a clean exit on SIGTERM."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx2
import numpy as np
import pytest
from PIL import Image

from service.__main__ import main
from service.lrp.ops import OPS
from tests.conftest import ROOT
from tests.support.live import free_port, output_of, start_service, stop

pytestmark = pytest.mark.slow  # a real process per module
ADMIN_TOKEN = "the-readme-test-admin-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The service on a copy of the shipped models (the README's PUT and DELETE change its models folder)."""
    models = tmp_path_factory.mktemp("served") / "models"
    shutil.copytree(ROOT / "models", models, ignore=shutil.ignore_patterns("*.py", "__pycache__", "README.md"))
    base, process = start_service(LRP_MODELS_DIR=str(models), LRP_ADMIN_TOKEN=ADMIN_TOKEN)
    yield base, process
    stop(process)


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
    shutil.copytree(ROOT / "models" / "breast-cancer", tmp_path / "models" / "breast-cancer")
    args = [arg.replace("http://127.0.0.1:8000", base).replace("$LRP_ADMIN_TOKEN", ADMIN_TOKEN)
            for arg in shlex.split(command)]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    if "DELETE" in args:
        assert result.stdout == b""  # 204
    elif "-o" in args:
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
    probe = [sys.executable, "-m", "service.serving.healthcheck"]
    assert subprocess.run(probe, cwd=ROOT, env=env, timeout=30).returncode == 0
    env["LRP_PORT"] = str(free_port())
    assert subprocess.run(probe, cwd=ROOT, env=env, timeout=30).returncode == 1


def test_sigterm_stops_the_process_cleanly(server):
    _, process = server
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0  # drained and shut down: a clean exit, not death by signal
    output = output_of(process)
    assert "loaded model 'digits'" in output and "Finished server process" in output
    assert "Traceback" not in output


def test_a_bad_setting_stops_start_up_naming_the_variable():
    env = {**os.environ, "LRP_PORT": "70000"}
    result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "configuration: LRP_PORT should be less than or equal to 65535, got '70000'"


def test_the_readme_op_table_is_the_one_the_command_prints(capsys):
    assert main(["op-table"]) == 0
    printed = capsys.readouterr().out.strip()
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- op-table -->\n", 1)[1].split("\n<!-- /op-table -->", 1)[0]
    assert block == printed
    assert all(f"| `{name}` |" in block for name in OPS)  # every op of the table has its row
    assert "`type_as`" in block and "`dropout_`" in block  # Gemma's cast, MobileNetV2's in-place dropout
