"""Schemathesis's command line against a live server: its examples, coverage and fuzzing phases, positive and
negative data, with the path's model names drawn mostly from the models the server holds (so that requests reach
the models, not only the 404 of an unknown name), PUT and DELETE authorised on a name no model has."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"
PHASES = "examples,coverage,fuzzing"
SCRATCH_NAME = "fuzzed-model"  # the only name PUT and DELETE are sent, so no served model is deleted mid-run


def run_schemathesis(base: str, folder: Path, examples: int, token: str, seed: int = 0) -> tuple[int, str]:
    """Run schemathesis on every operation of the server at `base` with `examples` per operation and phase; its exit
    status and its report (the config file and reports are written into `folder`)."""
    names = [model["name"] for model in httpx2.get(f"{base}/models", timeout=30).json()]
    versions = [httpx2.get(f"{base}/models/{name}", timeout=30).json()["version"] for name in names]
    config = folder / "schemathesis.toml"
    config.write_text("\n".join([
        f"[dictionaries.models]\nvalues = {json.dumps(names)}",
        f"[dictionaries.versions]\nvalues = {json.dumps(versions)}",
        f"[dictionaries.names]\nvalues = {json.dumps([SCRATCH_NAME])}",
        "[parameters]",
        '"path.model" = { dictionary = "models", probability = 0.9 }',
        '"path.version" = { dictionary = "versions", probability = 0.9 }',
        '"path.name" = { dictionary = "names" }', ""]))
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    done = subprocess.run(
        [executable, "--config-file", str(config), "run", f"{base}/openapi.json", "--phases", PHASES, "--mode", "all",
         "--max-examples", str(examples), "--seed", str(seed), "--checks", CHECKS, "--workers", "1", "--no-color",
         "--header", f"Authorization: Bearer {token}", "--report-dir", str(folder / "report")],
        capture_output=True, text=True, timeout=1800, cwd=folder)
    return done.returncode, done.stdout + done.stderr
