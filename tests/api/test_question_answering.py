"""An extractive question answerer (Hugging Face `BertForQuestionAnswering`, tiny random configuration, converted from
its saved checkpoint): the answer of each question and context equal to transformers' own span selection
(`select_starts_ends`, which its question-answering pipelines use) on the model's logits; the answer, a named span or
one of its logits explained over the question's and the context's tokens in a padded batch, equal to the engine
explaining the model object on the pair alone; pictures; the Open Inference Protocol's logits; inputs refused."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from tokenizers import Tokenizer, processors

from service.__main__ import main
from service.api.app import create_app
from service.errors import ModelFileError
from service.loader import load_directory
from service.lrp import PreparedModel
from service.manifest.model_json import ModelSpec
from service.settings import Settings
from service.store.format import load_model
from service.store.from_module import ConversionError, convert_module

T = pytest.importorskip("transformers")
from transformers.pipelines.document_question_answering import select_starts_ends  # noqa: E402

from service.store.from_hugging_face import convert_hugging_face  # noqa: E402  (needs transformers)

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "where", "what", "did", "is", "the", "mayor", "of",
         "london", "met", "angela", "in", "berlin", "paris", "visited", "capital", "france", "city", "a", "large",
         "##s", "."]
PAIRS = [{"question": "who met angela", "context": "the mayor of london met angela in berlin ."},
         {"question": "where is paris", "context": "paris is the capital of france , a large city ."},
         {"question": "what did angela visit", "context": "angela visited paris"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Any, Any]]:
    folder = tmp_path_factory.mktemp("qa")
    tokenizer = T.BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)})
    config = T.BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=24, max_position_embeddings=40)
    torch.manual_seed(3)
    model = T.BertForQuestionAnswering(config).eval()
    model.save_pretrained(folder / "checkpoint")
    tokenizer.save_pretrained(folder / "checkpoint")
    written = main(["convert-hf", str(folder / "checkpoint"), "--name", "qa", "--models-dir", str(folder / "models")])
    assert written == 0
    settings = Settings(models_dir=folder / "models")
    registry = load_directory(folder / "models", torch.device("cpu"), settings)
    with TestClient(create_app(settings, registry)) as client:
        yield client, model, tokenizer


def _logits(model: Any, tokenizer: Any, pair: dict[str, str]) -> tuple[Any, np.ndarray, np.ndarray]:
    encoded = tokenizer(pair["question"], pair["context"], return_tensors="pt")
    with torch.no_grad():
        output = model(**encoded)
    return encoded, output.start_logits[0].numpy(), output.end_logits[0].numpy()


def _expected_answer(model: Any, tokenizer: Any, pair: dict[str, str]) -> tuple[int, int, float, int, int]:
    """transformers' own span selection, with the p_mask its question-answering pipeline builds (the question's and
    special tokens masked, the [CLS] token not), and the answer's characters aligned to words as the pipeline did."""
    encoded, start, end = _logits(model, tokenizer, pair)
    sequence = encoded.sequence_ids(0)
    p_mask = np.array([[token != 1 for token in sequence]], dtype=int)
    p_mask[0, np.asarray(encoded["input_ids"][0]) == tokenizer.cls_token_id] = 0
    starts, ends, scores, _ = select_starts_ends(start[None], end[None], p_mask,
                                                 encoded["attention_mask"].numpy(), max_answer_len=15)
    first, last = int(starts[0]), int(ends[0])
    chars = encoded.word_to_chars(0, encoded.token_to_word(0, first), sequence_index=1).start, \
        encoded.word_to_chars(0, encoded.token_to_word(0, last), sequence_index=1).end
    return chars[0], chars[1], float(scores[0]), first, last


def test_each_answer_is_the_span_transformers_selects_from_the_model_s_logits(served):
    client, model, tokenizer = served
    response = client.post("/predict/qa", json={"inputs": PAIRS})
    assert response.status_code == 200, response.text
    for pair, prediction in zip(PAIRS, response.json()["predictions"], strict=True):
        start, end, score, first, last = _expected_answer(model, tokenizer, pair)
        answer = prediction["answer"]
        assert (answer["start"], answer["end"]) == (start, end)
        assert (answer["first_token"], answer["last_token"]) == (first, last)
        assert answer["text"] == pair["context"][start:end] and answer["score"] == pytest.approx(score, rel=1e-5)
        assert prediction["truncated"] is False and "probabilities" not in prediction
    summary = {m["name"]: m for m in client.get("/models").json()}["qa"]
    assert summary["task"] == "question_answering"
    assert client.get("/models/qa").json()["input"]["text"]["pair"] == ["question", "context"]


def _engine(model: Any, tokenizer: Any, pair: dict[str, str], seeds: list[int]) -> np.ndarray:
    """The engine on the model object and the pair alone: the relevance of the flat outputs `seeds` (token * 2 +
    0 for its start logit, + 1 for its end logit) together."""

    class Answers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            out = self.model(input_ids=x, token_type_ids=token_type_ids)
            return torch.cat([out.start_logits[..., None], out.end_logits[..., None]], dim=-1)

    encoded = tokenizer(pair["question"], pair["context"], return_tensors="pt")
    extra = {"token_type_ids": encoded["token_type_ids"]}
    prepared = PreparedModel.from_module(Answers(), encoded["input_ids"], extra=extra, per_position=True)
    return prepared.explain(encoded["input_ids"], target=[seeds], composite="attnlrp", extra=extra).relevance[0].numpy()


def _relevance(span: dict[str, Any]) -> np.ndarray:
    return np.array([t["relevance"] for t in span["tokens"]["tokens"]])


def test_the_answer_is_explained_by_its_start_and_end_logits_over_question_and_context_in_a_padded_batch(served):
    client, model, tokenizer = served
    response = client.post("/explain/qa", json={"inputs": PAIRS})
    assert response.status_code == 200, response.text
    for pair, explained in zip(PAIRS, response.json()["explanations"], strict=True):
        start, end, score, first, last = _expected_answer(model, tokenizer, pair)
        (span,) = explained["spans"]
        assert (span["first_token"], span["last_token"], span["start"], span["end"]) == (first, last, start, end)
        assert span["target"] == [0, 1] and span["label"] == ["start", "end"] and span["score"] == pytest.approx(score)
        _, starts, ends = _logits(model, tokenizer, pair)
        assert span["logit"] == pytest.approx(float(starts[first] + ends[last]), rel=1e-4, abs=1e-5)
        expected = _engine(model, tokenizer, pair, [first * 2, last * 2 + 1])
        np.testing.assert_allclose(_relevance(span), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
        tokens = span["tokens"]["tokens"]
        segments = {t["segment"] for t in tokens if not t["special"]}
        assert segments == {"question", "context"} and all("segment" not in t for t in tokens if t["special"])
        for t in tokens:
            if not t["special"] and t["token"] != "[UNK]":
                assert pair[t["segment"]][t["start"]:t["end"]] == t["token"].removeprefix("##")


def test_a_named_span_or_one_of_its_logits_is_explained(served):
    client, model, tokenizer = served
    pair = PAIRS[0]
    first = _expected_answer(model, tokenizer, pair)[3]
    targets: list[dict[str, Any]] = [{"start": 6, "end": 7}, {"logits": "start"}, {"logits": "end", "end": 9},
                                     {"start": 1, "end": 2}]
    seeds = [[12, 15], [first * 2], [19], [2, 5]]
    response = client.post("/explain/qa", json={"inputs": [pair] * 4, "target": targets})
    assert response.status_code == 200, response.text
    spans = [e["spans"][0] for e in response.json()["explanations"]]
    for span, wanted in zip(spans, seeds, strict=True):
        expected = _engine(model, tokenizer, pair, wanted)
        np.testing.assert_allclose(_relevance(span), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert [s["target"] for s in spans] == [[0, 1], [0], [1], [0, 1]]
    assert spans[0]["text"] == "mayor of" and spans[0]["score"] is not None  # tokens 5.. are the context's
    assert spans[3]["text"] == "who met" and "score" not in spans[3]  # a span of the question has no score
    assert spans[1]["first_token"] == first


@pytest.mark.parametrize(("instance", "target", "message"), [
    ("who met angela", None, "inputs[0]: the model reads a pair of texts: give an object with exactly the keys "
                             "['question', 'context'], got a string"),
    ({"question": "who"}, None, "exactly the keys ['question', 'context'], got ['question']"),
    ({"question": "who", "context": "paris", "extra": "x"}, None, "got ['context', 'extra', 'question']"),
    ({"question": "", "context": "paris"}, None, "inputs[0].question: the text is empty"),
    ({"question": "who", "context": 3}, None, "inputs[0].context: a text model takes strings, got a number"),
    ({"question": "who", "context": "paris"}, {"start": 3, "end": 1}, "end 1 comes before start 3"),
    ({"question": "who", "context": "paris"}, {"start": 9}, "target of inputs[0]: start 9 is out of range"),
    ({"question": "who", "context": "paris"}, 1, "model 'qa' answers questions: give {\"start\": i"),
    ({"question": "who", "context": "paris"}, {"token": 1}, "model 'qa' answers questions"),
    ({"question": "who", "context": "paris"}, {"logits": "middle"}, "target"),
    ({"question": "who", "context": "paris"}, {"start": True}, "target"),
])
def test_what_a_question_answerer_cannot_take_is_refused_saying_what_it_takes(served, instance, target, message):
    client, _, _ = served
    response = client.post("/explain/qa", json={"inputs": [instance], "target": target})
    assert response.status_code == 422 and message in response.json()["error"]["message"], response.text


def test_an_answer_span_is_no_target_of_a_classifier(client):
    response = client.post("/explain/walkthrough", json={"inputs": [[1.0, 2.0, 3.0]], "target": {"start": 1}})
    assert response.status_code == 422
    assert "is a question answerer's target; model 'walkthrough' is not one" in response.json()["error"]["message"]


def test_answers_are_drawn_with_question_and_context_and_the_protocol_gives_the_start_and_end_logits(served):
    client, model, tokenizer = served
    picture = client.post("/explain/qa", json={"inputs": PAIRS[:2], "format": "png"})
    assert picture.status_code == 200 and Image.open(io.BytesIO(picture.content)).size[0] > 100
    page = client.post("/explain/qa", json={"inputs": PAIRS[:1], "format": "html"})
    assert page.status_code == 200 and "start + end" in page.text
    assert page.text.index(">who</span>") < page.text.index(">mayor</span>")  # the question, then the context
    rows = [value for pair in PAIRS for value in (pair["question"], pair["context"])]
    body = {"inputs": [{"name": "input", "shape": [3, 2], "datatype": "BYTES", "data": rows}]}
    answer = client.post("/v2/models/qa/infer", json=body)
    assert answer.status_code == 200, answer.text
    (logits,) = answer.json()["outputs"]
    encoded = tokenizer([p["question"] for p in PAIRS], [p["context"] for p in PAIRS], padding=True,
                        return_tensors="pt")
    with torch.no_grad():
        out = model(**encoded)
    expected = torch.stack([out.start_logits, out.end_logits], dim=-1) * encoded["attention_mask"][..., None]
    np.testing.assert_allclose(np.asarray(logits["data"]).reshape(logits["shape"]), expected.numpy(), rtol=1e-4,
                               atol=1e-5)
    metadata = client.get("/v2/models/qa").json()
    assert metadata["inputs"][0]["shape"] == [-1, 2] and [o["name"] for o in metadata["outputs"]] == ["logits"]
    flat = {"inputs": [{"name": "input", "shape": [6], "datatype": "BYTES", "data": rows}]}
    assert client.post("/v2/models/qa/infer", json=flat).status_code == 400
    refused = client.post("/v2/models/qa/infer", json={**body, "parameters": {"explain": True}})
    assert refused.status_code == 422 and "POST /explain/{model}" in refused.json()["error"]


def test_a_long_context_is_cut_and_a_question_longer_than_the_model_takes_is_refused(served, tmp_path):
    _, model, tokenizer = served
    folder = tmp_path / "models"
    convert_hugging_face(model, folder / "short", tokenizer=tokenizer, max_tokens=12, truncation="truncate")
    settings = Settings(models_dir=folder)
    with TestClient(create_app(settings, load_directory(folder, torch.device("cpu"), settings))) as short:
        answer = short.post("/predict/short", json={"inputs": PAIRS[:2]})
        assert answer.status_code == 200, answer.text
        for pair, prediction in zip(PAIRS[:2], answer.json()["predictions"], strict=True):
            assert prediction["truncated"] is True and prediction["answer"]["end"] <= len(pair["context"])
        explained = short.post("/explain/short", json={"inputs": PAIRS[:1]}).json()["explanations"][0]
        assert len(explained["spans"][0]["tokens"]["tokens"]) == 12
        long_question = {"question": "who met angela in berlin " * 3, "context": "paris"}
        refused = short.post("/predict/short", json={"inputs": [long_question]})
        assert refused.status_code == 422
        assert "the first text of the pair alone has more tokens than the model takes" in refused.text


def test_a_question_answerer_without_token_types_converts_and_answers_as_transformers_selects(tmp_path):
    config = T.DistilBertConfig(vocab_size=len(WORDS), dim=16, n_layers=2, n_heads=2, hidden_dim=24,
                                max_position_embeddings=40)
    torch.manual_seed(4)
    model = T.DistilBertForQuestionAnswering(config).eval()
    plain = T.DistilBertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)})
    assert "token_type_ids" not in plain.model_input_names
    convert_hugging_face(model, tmp_path / "distil", tokenizer=plain)
    document = json.loads((tmp_path / "distil" / "model.json").read_text())
    assert document["input"]["text"]["pair"] == ["question", "context"]
    assert "type_argument" not in document["input"]["text"]
    settings = Settings(models_dir=tmp_path)
    with TestClient(create_app(settings, load_directory(tmp_path, torch.device("cpu"), settings))) as client:
        answers = client.post("/predict/distil", json={"inputs": PAIRS}).json()["predictions"]
    for pair, prediction in zip(PAIRS, answers, strict=True):
        start, end, score, _, _ = _expected_answer(model, plain, pair)
        assert (prediction["answer"]["start"], prediction["answer"]["end"]) == (start, end)
        assert prediction["answer"]["score"] == pytest.approx(score, rel=1e-5)


def _document(served: Any) -> dict[str, Any]:
    folder = Path(served[0].app.state.service.settings.models_dir) / "qa"
    document: dict[str, Any] = json.loads((folder / "model.json").read_text())
    return document


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["input"]["text"].pop("pair"), 'task "question_answering" reads a pair of texts'),
    (lambda d: d["input"]["text"].update(pair=["question", "passage"]), "reads a pair of texts"),
    (lambda d: d.update(classes=["begin", "end"]), "classes ['start', 'end']"),
    (lambda d: d["input"]["text"].update(pair=["text", "text"]), "the two texts of a pair need different names"),
    (lambda d: d["input"]["text"].update(type_argument="attention_mask"), "name two different arguments"),
    (lambda d: d.update(evaluation={"examples": [{"question": "who", "context": "paris"}]}),
     "its faithfulness is not measured"),
])
def test_model_json_of_a_question_answerer_says_what_it_reads(served, change, message):
    document = _document(served)
    change(document)
    with pytest.raises(ValueError, match=re.escape(message)):
        ModelSpec.model_validate(document)


def test_a_tokenizer_whose_pair_types_pass_the_model_s_type_table_is_refused_at_load(served, tmp_path):
    source = Path(served[0].app.state.service.settings.models_dir) / "qa"
    shutil.copytree(source, tmp_path / "qa")
    hostile = Tokenizer.from_file(str(tmp_path / "qa" / "tokenizer.json"))
    cls_id, sep_id = WORDS.index("[CLS]"), WORDS.index("[SEP]")
    hostile.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:7 [SEP]:7", special_tokens=[("[CLS]", cls_id),
                                                                                  ("[SEP]", sep_id)])
    hostile.save(str(tmp_path / "qa" / "tokenizer.json"))
    with pytest.raises(ModelFileError, match=re.escape("tokenizer.json's pair template gives type ids [0, 7], which "
                                                       "the graph cannot take")):
        load_model(tmp_path / "qa")


def test_a_lone_surrogate_in_a_context_is_refused_and_the_next_request_is_answered(served):
    client, _, _ = served
    refused = client.post("/predict/qa", content=b'{"inputs": [{"question": "who", "context": "\\ud800 paris"}]}',
                          headers={"content-type": "application/json"})
    assert refused.status_code == 422 and "inputs[0].context: not valid Unicode" in refused.text
    assert client.post("/predict/qa", json={"inputs": PAIRS[:1]}).status_code == 200


def test_a_named_span_s_text_is_in_one_text_of_the_pair_without_its_special_tokens(served):
    client, _, _ = served
    pair = PAIRS[0]  # [CLS] who met angela [SEP] the mayor of london met angela in berlin . [SEP]
    targets = [{"start": 4, "end": 6}, {"start": 5, "end": 14}, {"start": 2, "end": 6}, {"start": 0, "end": 0}]
    response = client.post("/explain/qa", json={"inputs": [pair] * 4, "target": targets})
    assert response.status_code == 200, response.text
    found = [(s["text"], s["start"], s["end"], s.get("segment")) for e in response.json()["explanations"]
             for s in e["spans"]]
    assert found == [("the mayor", 0, 9, "context"), (pair["context"], 0, len(pair["context"]), "context"),
                     ("met angela", 4, 14, "question"), ("", 0, 0, None)]


def test_a_left_padding_question_answerer_is_refused_at_conversion_saying_why(served, tmp_path):
    _, model, _ = served
    left = T.BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)}, padding_side="left")
    with pytest.raises(ConversionError, match="reads the context first"):
        convert_hugging_face(model, tmp_path / "left", tokenizer=left)


def test_a_pair_classifier_explains_premise_and_hypothesis_and_refuses_evaluate(tmp_path):
    tokenizer = T.BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)})
    config = T.BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=24, max_position_embeddings=40, num_labels=3)
    torch.manual_seed(5)
    model = T.BertForSequenceClassification(config).eval()
    fields = {"input": {"kind": "text", "shape": [40], "text": {
        "pad_token": "[PAD]", "pair": ["premise", "hypothesis"], "type_argument": "token_type_ids"}},
        "classes": ["entailment", "neutral", "contradiction"], "default_composite": "attnlrp"}
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    convert_module(_PairClassifier(model), tmp_path / "nli", fields, tokenizer=backend)
    pair = {"premise": "the mayor of london met angela", "hypothesis": "angela visited paris"}
    settings = Settings(models_dir=tmp_path)
    with TestClient(create_app(settings, load_directory(tmp_path, torch.device("cpu"), settings))) as client:
        predicted = client.post("/predict/nli", json={"inputs": [pair]}).json()["predictions"][0]
        encoded = tokenizer(pair["premise"], pair["hypothesis"], return_tensors="pt")
        with torch.no_grad():
            expected = model(**encoded).logits[0]
        np.testing.assert_allclose(predicted["logits"], expected.numpy(), rtol=1e-4, atol=1e-5)
        explained = client.post("/explain/nli", json={"inputs": [pair]}).json()["explanations"][0]
        segments = [t.get("segment") for t in explained["text"]["tokens"]]
        assert segments.count("premise") == 6 and segments.count("hypothesis") == 3
        refused = client.post("/explain/nli", json={"inputs": [pair], "evaluate": {"steps": 2}})
        assert refused.status_code == 422 and "reads a pair of texts" in refused.json()["error"]["message"]


class _PairClassifier(torch.nn.Module):
    """A sequence classifier called with the pair's token type ids."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids=x, attention_mask=attention_mask,
                                          token_type_ids=token_type_ids).logits
        return logits


def test_without_a_classifier_token_the_leading_special_token_takes_no_part_in_the_softmax(served, tmp_path):
    _, model, tokenizer = served
    no_cls = T.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, pad_token="[PAD]",
                                       bos_token="[CLS]", sep_token="[SEP]")
    assert no_cls.cls_token_id is None
    convert_hugging_face(model, tmp_path / "bos", tokenizer=no_cls)
    assert "cls_token" not in json.loads((tmp_path / "bos" / "model.json").read_text())["input"]["text"]
    settings = Settings(models_dir=tmp_path)
    with TestClient(create_app(settings, load_directory(tmp_path, torch.device("cpu"), settings))) as client:
        answers = client.post("/predict/bos", json={"inputs": PAIRS}).json()["predictions"]
    for pair, prediction in zip(PAIRS, answers, strict=True):
        start, end, score, _, _ = _expected_answer(model, no_cls, pair)
        assert (prediction["answer"]["start"], prediction["answer"]["end"]) == (start, end)
        assert prediction["answer"]["score"] == pytest.approx(score, rel=1e-5)
