"""A token classifier (Hugging Face `BertForTokenClassification`, tiny random configuration, converted from its saved
checkpoint): each token's label and the entities, equal to the Hugging Face pipeline's "simple" aggregation; each
predicted entity, or a token a request names, explained over all tokens of its text in a padded batch, equal to the
engine explaining the model object on the text alone; pictures per span; the Open Inference Protocol's logits."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from service.__main__ import main
from service.api.app import create_app
from service.inference import run_tokens
from service.loader import load_directory
from service.lrp import PreparedModel
from service.manifest.model_json import ModelSpec
from service.settings import Settings

T = pytest.importorskip("transformers")
from service.store.from_hugging_face import convert_hugging_face  # noqa: E402  (needs transformers)

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "angela", "merkel", "visited", "paris", "and", "berlin", "in",
         "may", "the", "mayor", "of", "london", "met", "##s", "."]
TEXTS = ["angela merkel visited paris", "the mayor of london met angela in berlin .", "paris"]
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Any, Any]]:
    folder = tmp_path_factory.mktemp("ner")
    tokenizer = T.BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)})
    config = T.BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=24, max_position_embeddings=32, num_labels=len(LABELS),
                          id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)})
    torch.manual_seed(1)  # a seed whose labels make entities of one and of several tokens
    model = T.BertForTokenClassification(config).eval()
    model.save_pretrained(folder / "checkpoint")
    tokenizer.save_pretrained(folder / "checkpoint")
    written = main(["convert-hf", str(folder / "checkpoint"), "--name", "ner", "--models-dir", str(folder / "models")])
    assert written == 0
    settings = Settings(models_dir=folder / "models")
    registry = load_directory(folder / "models", torch.device("cpu"), settings)
    with TestClient(create_app(settings, registry)) as client:
        yield client, model, tokenizer


def test_each_token_s_label_and_the_entities_are_the_hugging_face_pipeline_s(served):
    client, model, tokenizer = served
    response = client.post("/predict/ner", json={"inputs": TEXTS})
    assert response.status_code == 200, response.text
    pipeline = T.pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    for text, prediction in zip(TEXTS, response.json()["predictions"], strict=True):
        encoded = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            probabilities = model(**encoded).logits[0].softmax(-1)
        assert [t["label"] for t in prediction["tokens"]] == [LABELS[int(i)] for i in probabilities.argmax(-1)]
        assert [t["probability"] for t in prediction["tokens"]] == pytest.approx(
            probabilities.max(-1).values.tolist(), rel=1e-5)
        expected = pipeline(text)
        assert [(e["entity"], e["start"], e["end"]) for e in prediction["entities"]] == [
            (e["entity_group"], e["start"], e["end"]) for e in expected]
        assert [e["score"] for e in prediction["entities"]] == pytest.approx([float(e["score"]) for e in expected],
                                                                              rel=1e-5)
        assert all(e["text"] == text[e["start"]:e["end"]] for e in prediction["entities"])
        assert prediction["truncated"] is False
    assert any(len(p["entities"]) > 0 for p in response.json()["predictions"])
    assert any(e["last_token"] > e["first_token"] for p in response.json()["predictions"] for e in p["entities"])


def _engine(model: Any, tokenizer: Any, text: str, seeds: list[int]) -> np.ndarray:
    """The engine on the model object and the text alone: the relevance of the flat outputs `seeds` together."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    prepared = PreparedModel.from_module(model, ids, per_position=True)
    return prepared.explain(ids, target=[seeds], composite="attnlrp").relevance[0].numpy()


def test_each_predicted_entity_is_explained_over_all_tokens_of_its_text(served):
    client, model, tokenizer = served
    entities = [p["entities"] for p in client.post("/predict/ner", json={"inputs": TEXTS}).json()["predictions"]]
    response = client.post("/explain/ner", json={"inputs": TEXTS})
    assert response.status_code == 200, response.text
    for text, found, explained in zip(TEXTS, entities, response.json()["explanations"], strict=True):
        spans = explained["spans"]
        assert [(s.get("entity"), s["start"], s["end"]) for s in spans] == [(e["entity"], e["start"], e["end"])
                                                                           for e in found]
        for span in spans:
            seeds = [(span["first_token"] + k) * len(LABELS) + c for k, c in enumerate(span["target"])]
            expected = _engine(model, tokenizer, text, seeds)
            ours = np.array([t["relevance"] for t in span["tokens"]["tokens"]])
            np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
            assert span["label"] == [LABELS[c] for c in span["target"]]


def test_a_named_token_and_class_are_explained_in_a_padded_batch_as_alone(served):
    client, model, tokenizer = served
    targets: list[dict[str, Any]] = [{"token": 2, "class": "B-LOC"}, {"token": 4}, {"token": 1, "class": 0}]
    response = client.post("/explain/ner", json={"inputs": TEXTS, "target": targets})
    assert response.status_code == 200, response.text
    for text, target, explained in zip(TEXTS, targets, response.json()["explanations"], strict=True):
        (span,) = explained["spans"]
        assert span["first_token"] == span["last_token"] == target["token"] and "entity" not in span
        ids = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            predicted = int(model(**ids).logits[0, target["token"]].argmax())
        chosen = {"B-LOC": 3, 0: 0}.get(target.get("class"), predicted)
        assert span["target"] == [chosen]
        expected = _engine(model, tokenizer, text, [target["token"] * len(LABELS) + chosen])
        ours = np.array([t["relevance"] for t in span["tokens"]["tokens"]])
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("target", "message"), [
    ({"token": 9}, "inputs[0]: token 9 is out of range; the text has 6 tokens"),
    (1, "classifies every token: give {\"token\": i, \"class\": c}"),
    ({"token": 1, "class": "B-ORG"}, "unknown class label 'B-ORG'"),
])
def test_targets_a_token_classifier_cannot_take_are_refused_saying_what_it_takes(served, target, message):
    client, _, _ = served
    response = client.post("/explain/ner", json={"inputs": TEXTS[:1], "target": target})
    assert response.status_code == 422 and message in response.json()["error"]["message"], response.text


def test_spans_are_drawn_and_the_open_inference_protocol_gives_every_token_s_logits(served):
    client, model, tokenizer = served
    picture = client.post("/explain/ner", json={"inputs": TEXTS[:2], "format": "png"})
    assert picture.status_code == 200 and Image.open(io.BytesIO(picture.content)).size[0] > 100
    page = client.post("/explain/ner", json={"inputs": TEXTS[:1], "format": "html", "target": {"token": 2}})
    assert page.status_code == 200 and "merkel" in page.text and "(tokens 2-2)" in page.text
    body = {"inputs": [{"name": "input", "shape": [3], "datatype": "BYTES", "data": TEXTS}]}
    answer = client.post("/v2/models/ner/infer", json=body).json()
    logits = np.asarray(answer["outputs"][0]["data"]).reshape(answer["outputs"][0]["shape"])
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**encoded).logits * encoded["attention_mask"][..., None]
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-4, atol=1e-5)
    refused = client.post("/v2/models/ner/infer", json={**body, "parameters": {"explain": True}})
    assert refused.status_code == 422 and "POST /explain/{model}" in refused.json()["error"]


def test_spans_are_explained_alike_in_passes_of_one_and_a_text_of_too_many_spans_fails_alone(served, monkeypatch):
    client, _, _ = served
    expected = client.post("/explain/ner", json={"inputs": TEXTS}).json()["explanations"]
    registry = client.app.state.service.ready_registry()
    settings = Settings(models_dir=client.app.state.service.settings.models_dir, max_batch_size=1)
    with TestClient(create_app(settings, registry)) as one_at_a_time:
        again = one_at_a_time.post("/explain/ner", json={"inputs": TEXTS}).json()["explanations"]
    for before, after in zip(expected, again, strict=True):
        for a, b in zip(before["spans"], after["spans"], strict=True):
            assert a["logit"] == pytest.approx(b["logit"], rel=1e-5)
            np.testing.assert_allclose([t["relevance"] for t in a["tokens"]["tokens"]],
                                       [t["relevance"] for t in b["tokens"]["tokens"]], rtol=1e-4, atol=1e-6)
    monkeypatch.setattr(run_tokens, "MOST_SPANS", 1)
    several = max(range(len(TEXTS)), key=lambda i: len(expected[i]["spans"]))
    answer = client.post("/explain/ner", json={"inputs": [TEXTS[several]]})
    assert answer.status_code == 422
    assert "entities predicted; at most 1 spans of a text are explained" in answer.json()["error"]["message"]


def test_the_protocol_lists_no_explanation_outputs_for_a_token_classifier_and_says_where_to_explain(served):
    client, _, _ = served
    metadata = client.get("/v2/models/ner").json()
    assert [output["name"] for output in metadata["outputs"]] == ["logits", "probabilities"]
    assert metadata["outputs"][0]["shape"] == [-1, -1, len(LABELS)]
    body = {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": TEXTS[:1]}],
            "parameters": {"explain": True, "target": 1}}
    refused = client.post("/v2/models/ner/infer", json=body)
    assert refused.status_code == 422 and "explain it with POST /explain/{model}" in refused.json()["error"]


@pytest.mark.parametrize("target", [{"token": True}, {"token": "1"}, {"token": 1.0}, {"token": 1, "class": True}])
def test_a_token_target_must_hold_integers(served, target):
    client, _, _ = served
    assert client.post("/explain/ner", json={"inputs": TEXTS[:1], "target": target}).status_code == 422


def test_a_text_without_entities_is_drawn_saying_so(tmp_path, served):
    _, model, tokenizer = served
    quiet = T.BertForTokenClassification(model.config).eval()
    with torch.no_grad():
        quiet.classifier.bias.copy_(torch.tensor([100.0, 0, 0, 0, 0]))  # every token O
    convert_hugging_face(quiet, tmp_path / "quiet", tokenizer=tokenizer)
    settings = Settings(models_dir=tmp_path)
    with TestClient(create_app(settings, load_directory(tmp_path, torch.device("cpu"), settings))) as client:
        answer = client.post("/explain/quiet", json={"inputs": TEXTS[:2]})
        assert [e["spans"] for e in answer.json()["explanations"]] == [[], []]
        picture = client.post("/explain/quiet", json={"inputs": TEXTS[:2], "format": "png"})
        assert picture.status_code == 200 and Image.open(io.BytesIO(picture.content)).size[0] > 100
        page = client.post("/explain/quiet", json={"inputs": TEXTS[:1], "format": "html"})
        assert page.status_code == 200 and "#0 no entity predicted" in page.text


def test_a_token_classifier_s_graph_ends_in_logits(served, tmp_path):
    document = json.loads((Path(served[0].app.state.service.settings.models_dir) / "ner" / "model.json").read_text())
    document["output_activation"] = "softmax"
    with pytest.raises(ValueError, match="its graph ends in every token's logits"):
        ModelSpec.model_validate(document)
