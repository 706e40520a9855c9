"""Shared fixtures: the shipped models loaded once, and an HTTP client against the app serving them."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.loader import Registry, load_directory
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


@functools.cache
def shipped_models(settings: Settings | None = None) -> Registry:
    """The shipped models loaded on the CPU under `settings` (which give them their serving limits), once each."""
    return load_directory(MODELS, torch.device("cpu"), settings or Settings(models_dir=MODELS))


@pytest.fixture(scope="session")
def registry() -> Registry:
    return shipped_models()


@pytest.fixture(scope="session")
def client(registry: Registry) -> Iterator[TestClient]:
    settings = Settings(models_dir=MODELS, max_instances=16, max_upload_bytes=200_000, max_image_pixels=4_000_000)
    with TestClient(create_app(settings, registry)) as test_client:
        yield test_client


def model_json(name: str) -> dict[str, Any]:
    """The shipped model.json of `name`, parsed with plain json (not the code under test)."""
    document: dict[str, Any] = json.loads((MODELS / name / "model.json").read_text())
    return document


_SKIPPED: list[str] = []


def _note_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Remember a skip with its reason (CI allows only CUDA's: `.ci/run` installs every other tool)."""
    if report.skipped and isinstance(report.longrepr, tuple):
        _SKIPPED.append(f"{report.nodeid}: {report.longrepr[2]}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A module skipped whole (`pytest.importorskip` of a missing package) counts too."""
    _note_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI (CI=true), a test skipped for anything but a missing CUDA device fails the run, naming it."""
    if os.environ.get("CI") != "true":
        return
    missing = [skip for skip in _SKIPPED if "CUDA" not in skip]
    if missing:
        print("\nCI skips only what needs CUDA; these were skipped for another reason (install what they need in "
              ".ci/run or the requirements):\n" + "\n".join(missing))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
