"""A kill -9 at every step of committing a model (a child process killed by the fault-injection hook
`files.after_step`, not by a timer): after the restart the model serves its old or its new version, never neither,
and nothing the crash left stays in the models folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service.loader import load_directory
from service.settings import Settings
from service.store import files
from tests.conftest import MODELS, ROOT

CHILD = """
import os, sys
from pathlib import Path
from service.store import files
models, staged, step = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
files.after_step = lambda reached: os._exit(137) if reached == step else None
files.commit(models, "walkthrough", staged, files.version_of(staged.iterdir()))
"""


def _staged(models: Path, description: str) -> Path:
    """A staging folder holding the walkthrough model with another description (a new version)."""
    staged = files.staging_folder(models)
    for path in (MODELS / "walkthrough").iterdir():
        shutil.copy(path, staged / path.name)
    document = json.loads((staged / "model.json").read_text())
    document["description"] = description
    (staged / "model.json").write_text(json.dumps(document))
    return staged


def _commit_in_a_child(models: Path, staged: Path, step: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", CHILD, str(models), str(staged), step], env=env, timeout=120,
                          check=False).returncode


@pytest.mark.parametrize("shipped", [True, False], ids=["a shipped folder", "a committed version"])
@pytest.mark.parametrize("step", files.COMMIT_STEPS)
def test_a_kill_at_any_step_of_a_commit_leaves_the_old_or_the_new_version(tmp_path, step, shipped, caplog):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(MODELS / "walkthrough", models / "walkthrough")
    old = json.loads((models / "walkthrough" / "model.json").read_text())["description"]
    if not shipped:  # the model already lives under .versions/ behind a link
        old = "the version before"
        files.commit(models, "walkthrough", _staged(models, old), "0" * 64)
    staged = _staged(models, "the new version")
    reached = step != "original" or shipped  # only a shipped folder is moved aside
    assert _commit_in_a_child(models, staged, step) == (137 if reached else 0)
    registry = load_directory(models, torch.device("cpu"), Settings(models_dir=models))
    assert registry.names == ["walkthrough"] and not registry.failures
    served = registry.get("walkthrough").spec.description
    assert served in (old, "the new version")
    if step in ("committed", "discarded") or not reached:
        assert served == "the new version"
    leftovers = [p.name for p in models.iterdir() if p.name.startswith((files.STAGING_PREFIX, files.LINK_PREFIX))]
    assert leftovers == []
    in_use = (models / "walkthrough").resolve()
    kept = sorted((models / files.VERSIONS).iterdir()) if (models / files.VERSIONS).is_dir() else []
    assert all(folder.resolve() == in_use for folder in kept), f"versions no model uses: {kept}"
    assert load_directory(models, torch.device("cpu"), Settings(models_dir=models)).get("walkthrough") \
        .spec.description == served  # a second restart changes nothing


def test_recovery_leaves_what_it_did_not_write_alone(tmp_path):
    models = tmp_path / "models"
    (models / files.VERSIONS / "notes").mkdir(parents=True)
    (models / files.VERSIONS / "README.txt").write_text("an operator's file")
    assert files.recover(models) == []
    assert sorted(p.name for p in (models / files.VERSIONS).iterdir()) == ["README.txt", "notes"]
