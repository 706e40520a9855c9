"""Outputs that are not one class, served from Hugging Face heads converted with their `problem_type`: a multi-label
classifier (sigmoid per label, the labels of probability >= 0.5, several labels explained together) and regressors
(one value; two values, of which a request names the one to explain), over REST, the Open Inference Protocol and in
pictures. Expected numbers come from the Hugging Face models themselves."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from service.api.app import create_app
from service.loader import load_directory
from service.manifest.model_json import ModelSpec
from service.settings import Settings
from service.store.from_module import ConversionError

T = pytest.importorskip("transformers")
from service.store.from_hugging_face import convert_hugging_face  # noqa: E402  (needs transformers)

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was", "good", "bad", "plot", "great", "not",
         "a", "!"]
TEXTS = ["the film was good!", "a bad plot", "not great , not good"]
LABELS = {"multi": ["action", "comedy", "drama"], "score": ["score"], "pair": ["valence", "arousal"]}
PROBLEMS = {"multi": "multi_label_classification", "score": "regression", "pair": "regression"}


def _bert(name: str) -> Any:
    labels = LABELS[name]
    config = T.BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=24, max_position_embeddings=24, num_labels=len(labels),
                          problem_type=PROBLEMS[name], id2label=dict(enumerate(labels)),
                          label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(len(labels))
    model = T.BertForSequenceClassification(config).eval()
    with torch.no_grad():  # labels on both sides of 0.5 (a random BERT's pooled outputs of all texts are alike)
        model.classifier.bias.copy_(torch.tensor([2.0, 2.0, -2.0, 0.0, 0.0])[:len(labels)])
    return model


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, Any], Any]]:
    folder = tmp_path_factory.mktemp("tasks")
    tokenizer = T.BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)})
    models = {name: _bert(name) for name in LABELS}
    for name, model in models.items():
        convert_hugging_face(model, folder / "models" / name, tokenizer=tokenizer)
    settings = Settings(models_dir=folder / "models")
    with TestClient(create_app(settings, load_directory(folder / "models", torch.device("cpu"), settings))) as client:
        yield client, models, tokenizer


def _logits(models: dict[str, Any], tokenizer: Any, name: str) -> torch.Tensor:
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits: torch.Tensor = models[name](input_ids=encoded["input_ids"],
                                            attention_mask=encoded["attention_mask"]).logits
    return logits


def test_the_model_says_its_task(served):
    client, _, _ = served
    assert {m["name"]: m["task"] for m in client.get("/models").json()} == {
        "multi": "multi_label", "pair": "regression", "score": "regression"}
    assert client.get("/models/multi").json()["output_activation"] == "logits"  # the graph ends in the logits


def test_a_multi_label_model_gives_each_label_its_sigmoid_and_the_labels_at_one_half_or_more(served):
    client, models, tokenizer = served
    expected = _logits(models, tokenizer, "multi").sigmoid()
    predictions = client.post("/predict/multi", json={"inputs": TEXTS}).json()["predictions"]
    chosen = [[LABELS["multi"][j] for j in range(3) if expected[i, j] >= 0.5] for i in range(len(TEXTS))]
    assert [p["labels"] for p in predictions] == chosen, expected
    assert any(len(labels) >= 2 for labels in chosen) and any(len(labels) < 3 for labels in chosen), expected
    for prediction, row in zip(predictions, expected, strict=True):
        assert prediction["probabilities"] == pytest.approx(row.tolist(), rel=1e-5, abs=1e-6)
        assert prediction["label"] == LABELS["multi"][int(row.argmax())]


def test_several_labels_explained_together_sum_their_logits_and_their_relevance(served):
    client, models, tokenizer = served
    logits = _logits(models, tokenizer, "multi")
    together = client.post("/explain/multi", json={"inputs": TEXTS, "target": {"classes": ["action", 2]}})
    assert together.status_code == 200, together.text
    alone = {label: client.post("/explain/multi", json={"inputs": TEXTS, "target": label}).json()["explanations"]
             for label in ("action", "drama")}
    for i, explained in enumerate(together.json()["explanations"]):
        assert explained["target"] == [0, 2] and explained["label"] == ["action", "drama"]
        assert "probability" not in explained
        assert explained["logit"] == pytest.approx(float(logits[i, 0] + logits[i, 2]), rel=1e-5, abs=1e-5)
        summed = np.add(alone["action"][i]["relevance"], alone["drama"][i]["relevance"])
        np.testing.assert_allclose(explained["relevance"], summed, rtol=1e-4, atol=1e-6 * np.abs(summed).max())
        assert alone["action"][i]["probability"] == pytest.approx(float(logits[i, 0].sigmoid()), rel=1e-5)


def test_a_regression_serves_its_value_and_explains_it_by_default(served):
    client, models, tokenizer = served
    values = _logits(models, tokenizer, "score")[:, 0]
    predictions = client.post("/predict/score", json={"inputs": TEXTS}).json()["predictions"]
    for prediction, value in zip(predictions, values.tolist(), strict=True):
        assert set(prediction) == {"logits", "values"}
        assert prediction["values"]["score"] == pytest.approx(value, rel=1e-5, abs=1e-6)
    explained = client.post("/explain/score", json={"inputs": TEXTS}).json()["explanations"]
    for one, value in zip(explained, values.tolist(), strict=True):
        assert (one["target"], one["label"]) == (0, "score") and "probability" not in one
        assert one["logit"] == pytest.approx(value, rel=1e-5, abs=1e-6)
    picture = client.post("/explain/score", json={"inputs": TEXTS[:1], "format": "png"})
    assert picture.status_code == 200 and Image.open(io.BytesIO(picture.content)).size[0] > 100


def test_a_regression_of_two_values_explains_the_one_named_and_asks_for_a_name_otherwise(served):
    client, models, tokenizer = served
    refused = client.post("/explain/pair", json={"inputs": TEXTS})
    assert refused.status_code == 422
    assert "regression with 2 outputs ['valence', 'arousal']; name the one to explain" in \
        refused.json()["error"]["message"]
    named = client.post("/explain/pair", json={"inputs": TEXTS, "target": "arousal"}).json()["explanations"]
    values = _logits(models, tokenizer, "pair")[:, 1]
    assert [one["logit"] for one in named] == pytest.approx(values.tolist(), rel=1e-5, abs=1e-6)


def test_the_open_inference_protocol_follows_the_task(served):
    client, models, tokenizer = served
    metadata = client.get("/v2/models/score").json()
    assert [output["name"] for output in metadata["outputs"]] == ["logits", "relevance", "target"]
    body = {"inputs": [{"name": "input", "shape": [3], "datatype": "BYTES", "data": TEXTS}]}
    answer = client.post("/v2/models/score/infer", json=body).json()
    assert [output["name"] for output in answer["outputs"]] == ["logits"]
    assert answer["outputs"][0]["data"] == pytest.approx(_logits(models, tokenizer, "score")[:, 0].tolist(),
                                                         rel=1e-5, abs=1e-6)
    wrong = client.post("/v2/models/score/infer", json={**body, "outputs": [{"name": "probabilities"}]})
    assert wrong.status_code == 400 and "unknown output(s) ['probabilities']" in wrong.json()["error"]
    several = client.post("/v2/models/multi/infer", json={**body, "parameters": {
        "explain": True, "target": '{"classes": [0, 1]}'}})
    assert several.status_code == 422
    assert "explain several classes together with POST /explain/{model}" in several.json()["error"]


def test_a_problem_type_the_converter_does_not_know_is_refused(tmp_path: Path):
    model = _bert("multi")
    model.config.problem_type = "ordinal"
    with pytest.raises(ConversionError, match=r"config\.problem_type 'ordinal' is not one the converter knows"):
        convert_hugging_face(model, tmp_path / "m", tokenizer=object())


def test_a_token_target_on_a_model_that_does_not_classify_tokens_is_refused(served):
    client, _, _ = served
    response = client.post("/explain/multi", json={"inputs": TEXTS[:1], "target": {"token": 1}})
    assert response.status_code == 422
    assert "{\"token\": ...} is a token classifier's target; model 'multi' takes a class index or label" in \
        response.json()["error"]["message"]
    assert client.post("/explain/multi", json={"inputs": TEXTS[:1]}).status_code == 200  # null: the predicted class


def test_an_upload_explains_several_classes_given_as_json_in_its_form(client):
    image = io.BytesIO()
    Image.fromarray(np.full((16, 16), 200, dtype=np.uint8), "L").save(image, format="PNG")
    files = {"file": ("digit.png", image.getvalue(), "image/png")}
    answer = client.post("/explain/digits/image", files=files, data={"target": '{"classes": [0, 3]}', "format": "json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["explanations"][0]["target"] == [0, 3]
    wrong = client.post("/explain/digits/image", files=files, data={"target": '{"classes": []}'})
    assert wrong.status_code == 422 and "several classes are written" in wrong.json()["error"]["message"]


@pytest.mark.parametrize("target", [True, {"classes": [True, 2]}, {"classes": ["1"]}, [0.0, 1, 2]])
def test_targets_hold_integers_or_labels_not_booleans_or_floats(served, target):
    client, _, _ = served
    response = client.post("/explain/multi", json={"inputs": TEXTS, "target": target})
    assert response.status_code == 422, response.text


def test_a_regression_of_several_outputs_takes_no_evaluation_examples():
    document = {"input": {"kind": "tensor", "shape": [2]}, "classes": ["x", "y"], "task": "regression",
                "evaluation": {"examples": [[0.0, 1.0]]},
                "graph": {"nodes": [{"name": "x", "op": "input"},
                                    {"name": "l", "op": "linear", "inputs": ["x"], "params": {"weight": "w"}}],
                          "output": "l"}}
    with pytest.raises(ValueError, match="a regression of several outputs is explained one named output at a time"):
        ModelSpec.model_validate(document)
