"""Shared fixtures: the shipped models loaded once, and an HTTP client against the app serving them."""

from __future__ import annotations

import functools
import json
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
