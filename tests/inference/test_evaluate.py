"""`"evaluate"` on /explain: each served faithfulness curve recomputed from /predict alone, as the README's scheme
says (remove the most relevant features first, ties to the lower index, baseline the middle of the range or the
training mean), for images, tabular rows and texts."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from sklearn.datasets import load_digits

from service.api.app import create_app
from service.lrp import PreparedModel
from service.render.figure import CURVE_HEIGHT, LERF_COLOR, MORF_COLOR, RANDOM_COLOR
from service.settings import Settings
from tests.conftest import MODELS, model_json, shipped_models

DIGITS = load_digits().images[:2].astype(int).tolist()


def _order(relevance: np.ndarray, descending: bool) -> list[int]:
    keys = -relevance if descending else relevance
    return sorted(range(len(relevance)), key=lambda i: (keys[i], i))


def _predicted_logits(client, model: str, instances: list, target: int) -> list[float]:
    answer = client.post(f"/predict/{model}", json={"inputs": instances})
    assert answer.status_code == 200, answer.text
    return [p["logits"][target] for p in answer.json()["predictions"]]


def test_an_image_curve_is_what_predict_gives_for_the_pixels_removed_in_order(client):
    answer = client.post("/explain/digits", json={"inputs": DIGITS, "evaluate": {"steps": 8, "random_orders": 2}})
    assert answer.status_code == 200, answer.text
    low, high = model_json("digits")["input"]["range"]
    for image, explanation in zip(DIGITS, answer.json()["explanations"], strict=True):
        found = explanation["faithfulness"]
        relevance = np.asarray(explanation["relevance"]).reshape(-1)
        assert found["features_per_step"] == 8 and len(found["curve_morf"]) == 9
        for curve, descending in ((found["curve_morf"], True), (found["curve_lerf"], False)):
            order, copies = _order(relevance, descending), []
            for step in range(1, 9):
                pixels = np.asarray(image, dtype=float).reshape(-1)
                pixels[order[:step * 8]] = (low + high) / 2  # the middle of the raw range
                copies.append(pixels.reshape(8, 8).tolist())
            expected = [explanation["logit"], *_predicted_logits(client, "digits", copies, explanation["target"])]
            assert curve == pytest.approx(expected, rel=1e-5, abs=1e-5)
        assert found["aopc_morf"] == pytest.approx(np.mean([found["curve_morf"][0] - v for v in found["curve_morf"]]))
        assert found["aopc_morf"] > found["aopc_lerf"]  # the explanation points at what the model uses


def test_a_tabular_curve_removes_features_to_their_training_mean(client):
    spec = model_json("breast-cancer")["input"]
    row = spec["example"]
    answer = client.post("/explain/breast-cancer", json={"inputs": [row], "evaluate": {"steps": 5}})
    explanation = answer.json()["explanations"][0]
    names, relevance = list(row), np.asarray(explanation["relevance"])
    order, copies = _order(relevance, True), []
    for step in range(1, 6):
        changed = dict(row)
        for i in order[:step * math.ceil(30 / 5)]:
            changed[names[i]] = spec["standardization"]["mean"][i]
        copies.append(changed)
    expected = [explanation["logit"], *_predicted_logits(client, "breast-cancer", copies, explanation["target"])]
    assert explanation["faithfulness"]["curve_morf"] == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_a_text_curve_masks_tokens_but_never_the_special_ones(client, registry):
    text = "The acting was wonderful, but the plot was a terrible mess."
    answer = client.post("/explain/sentiment", json={"inputs": [text], "evaluate": {"steps": 4}})
    explanation = answer.json()["explanations"][0]
    tokens = explanation["text"]["tokens"]
    entry = registry.get("sentiment")
    ids = entry.text.encode(text, "x").ids
    words = [i for i, t in enumerate(tokens) if not t["special"]]
    relevance = np.asarray([tokens[i]["relevance"] for i in words])
    order = [words[i] for i in _order(relevance, True)]
    per_step = math.ceil(len(words) / 4)
    mask = entry.text.tokenizer.token_to_id("[MASK]")
    copies = []
    for step in range(1, 5):
        row = list(ids)
        for i in order[:step * per_step]:
            row[i] = mask
        copies.append(row)
    batch = torch.tensor(copies)
    logits = entry.prepared.predict(batch, {"attention_mask": torch.ones_like(batch)})[:, explanation["target"]]
    assert explanation["faithfulness"]["curve_morf"][1:] == pytest.approx(logits.tolist(), rel=1e-5, abs=1e-6)
    assert explanation["faithfulness"]["features_per_step"] == per_step


def test_instances_of_one_request_are_evaluated_as_if_alone(client):
    together = client.post("/explain/digits", json={"inputs": DIGITS, "evaluate": {"steps": 4}}).json()
    for i, image in enumerate(DIGITS):
        alone = client.post("/explain/digits", json={"inputs": [image], "evaluate": {"steps": 4}}).json()
        assert together["explanations"][i]["faithfulness"]["curve_morf"] == pytest.approx(
            alone["explanations"][0]["faithfulness"]["curve_morf"], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize(("body", "message"), [
    ({"evaluate": {"steps": 0}}, "evaluate.steps"),
    ({"evaluate": {"steps": 4}, "format": "html"}, "evaluate is answered in JSON, or drawn under the heatmaps"),
])
def test_bad_evaluate_requests_are_422(client, body, message):
    answer = client.post(f"/explain/{'sentiment' if body.get('format') == 'html' else 'digits'}",
                         json={"inputs": ["fine"] if body.get("format") == "html" else DIGITS[:1], **body})
    assert answer.status_code == 422 and message in answer.json()["error"]["message"]


@pytest.mark.parametrize(("model", "inputs"), [("digits", DIGITS), ("sentiment", ["a wonderful film", "dull"])])
def test_a_png_with_evaluate_draws_the_curves_under_each_panel(client, model, inputs):
    plain = client.post(f"/explain/{model}", json={"inputs": inputs, "format": "png"})
    drawn = client.post(f"/explain/{model}", json={"inputs": inputs, "format": "png", "evaluate": {"steps": 5}})
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(plain.content)) as before, Image.open(io.BytesIO(drawn.content)) as after:
        assert after.height >= before.height + CURVE_HEIGHT  # a chart under each row of panels
        colours = {tuple(int(c) for c in p) for p in np.asarray(after.convert("RGB")).reshape(-1, 3)}
    assert {MORF_COLOR, LERF_COLOR, RANDOM_COLOR} <= colours


def _evaluated(settings: Settings, body: dict) -> tuple[int, dict, list[int]]:
    """Status and body of /explain/digits under `settings`, and the size of every pass the model ran."""
    passes: list[int] = []
    original = PreparedModel.predict

    def counting(self, x, extra=None):
        passes.append(len(x))
        return original(self, x, extra)

    with pytest.MonkeyPatch.context() as patch, TestClient(create_app(settings, shipped_models(settings))) as served:
        patch.setattr(PreparedModel, "predict", counting)
        response = served.post("/explain/digits", json=body)
    return response.status_code, response.json(), passes


def test_the_perturbed_copies_run_in_passes_of_the_batch_size_with_the_same_curves():
    body = {"inputs": DIGITS, "evaluate": {"steps": 6, "random_orders": 2}}
    copies = 2 * (1 + 6 * (2 + 2))
    status, small, passes = _evaluated(Settings(models_dir=MODELS, max_batch_size=8), body)
    assert status == 200 and passes == [8] * (copies // 8) + [copies % 8]
    status, large, passes = _evaluated(Settings(models_dir=MODELS, max_batch_size=128), body)
    assert status == 200 and passes == [copies]
    for one, other in zip(small["explanations"], large["explanations"], strict=True):
        np.testing.assert_allclose(one["faithfulness"]["curve_morf"], other["faithfulness"]["curve_morf"], rtol=1e-5)
        np.testing.assert_allclose(one["faithfulness"]["curve_random"], other["faithfulness"]["curve_random"],
                                   rtol=1e-5)


def test_an_evaluation_over_the_copies_limit_is_a_413_saying_what_to_ask():
    settings = Settings(models_dir=MODELS, max_evaluation_copies=1100)  # the shipped models' own examples ask 1020
    asked = {"steps": 100, "random_orders": 4}
    status, body, passes = _evaluated(settings, {"inputs": DIGITS, "evaluate": asked})
    assert status == 413 and passes == []
    assert body["error"]["message"] == (
        "evaluate asks the model to run 1202 inputs (2 instances x (1 + 100 steps x (2 + 4 random orders))); the "
        "limit is 1100 (LRP_MAX_EVALUATION_COPIES): ask for fewer steps, random orders or instances")
    status, _, _ = _evaluated(settings, {"inputs": DIGITS[:1], "evaluate": asked})
    assert status == 200
