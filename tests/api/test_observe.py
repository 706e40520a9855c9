"""Every /predict and /explain request is counted by model, verb and status; other paths are not."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.settings import Settings
from tests.conftest import MODELS
from tests.support.prometheus import parse

WALK = [[1.0, 0.8, 0.2]]


@pytest.fixture
def fresh(registry):
    """A client of a new app, so that its counters start at zero."""
    with TestClient(create_app(Settings(models_dir=MODELS), registry)) as client:
        yield client


def requests_by_label(client) -> dict[tuple[str, str, str], float]:
    counts = {}
    for (name, labelled), value in parse(client.get("/metrics").text).items():
        if name == "lrp_requests_total":
            pairs = dict(labelled)
            counts[pairs["model"], pairs["verb"], pairs["status"]] = value
    return counts


def test_each_answer_is_counted_under_its_model_verb_and_status(fresh):
    assert fresh.post("/predict/walkthrough", json={"inputs": WALK}).status_code == 200
    assert fresh.post("/explain/walkthrough", json={"inputs": WALK}).status_code == 200
    assert fresh.post("/explain/walkthrough", json={"inputs": WALK}).status_code == 200
    assert fresh.post("/explain/walkthrough", json={"inputs": [[1.0]]}).status_code == 422
    assert fresh.post("/explain/walkthrough", json={"inputs": WALK, "target": 7}).status_code == 422
    assert requests_by_label(fresh) == {("walkthrough", "predict", "200"): 1, ("walkthrough", "explain", "200"): 2,
                                        ("walkthrough", "explain", "422"): 2}


def test_unknown_model_names_share_one_label(fresh):
    for name in ("nope", "typo", "x" * 50):
        assert fresh.post(f"/predict/{name}", json={"inputs": WALK}).status_code == 404
    assert requests_by_label(fresh) == {("(unknown)", "predict", "404"): 3}


def test_uploads_count_under_their_verb(fresh):
    response = fresh.post("/predict/walkthrough/image", files={"file": ("a.png", b"not an image", "image/png")})
    assert response.status_code == 422
    assert requests_by_label(fresh) == {("walkthrough", "predict", "422"): 1}


def test_other_paths_are_not_counted(fresh):
    for path in ("/health/live", "/health/ready", "/models", "/models/digits", "/openapi.json", "/nowhere"):
        fresh.get(path)
    assert requests_by_label(fresh) == {}


def test_metrics_answers_before_the_models_are_loaded(tmp_path):
    with TestClient(create_app(Settings(models_dir=tmp_path / "absent"))) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert "# TYPE lrp_requests_total counter" in response.text.splitlines()
