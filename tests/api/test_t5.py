"""T5 (`T5ForSequenceClassification`, tiny random configuration) served: it reads each text's last <eos> row, which it
selects by a boolean mask over the batch. A text holding an <eos> of its own beside an ordinary one would make the rows
of the batch uneven: the service runs such a batch text by text, so each answer is the model's on that text alone,
and no other request's answer changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.loader import load_directory
from service.settings import Settings

T = pytest.importorskip("transformers")
from service.store.from_hugging_face import convert_hugging_face  # noqa: E402  (needs transformers)
from tests.support.hub_families import EOS, TEXT_FAMILIES  # noqa: E402

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was", "good", "bad", "plot", "a", "!"]
T5 = next(name for name in TEXT_FAMILIES if name.startswith("T5"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Any, Any]]:
    folder = tmp_path_factory.mktemp("t5")
    tokenizer = T.BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)})
    assert tokenizer.sep_token_id == EOS
    torch.manual_seed(0)
    model = TEXT_FAMILIES[T5]().eval()
    convert_hugging_face(model, folder / "t5", tokenizer=tokenizer)
    settings = Settings(models_dir=folder)
    with TestClient(create_app(settings, load_directory(folder, torch.device("cpu"), settings))) as client:
        yield client, model, tokenizer


def _alone(model: Any, tokenizer: Any, text: str) -> np.ndarray:
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits: np.ndarray = model(**encoded).logits[0].numpy()
    return logits


def test_texts_of_one_and_of_two_eos_tokens_in_one_batch_each_get_the_model_s_answer_alone(served):
    client, model, tokenizer = served
    texts = ["the film [SEP] was good", "a bad plot !", "the film was bad"]
    assert [tokenizer(t)["input_ids"].count(EOS) for t in texts] == [2, 1, 1]
    response = client.post("/predict/t5", json={"inputs": texts})
    assert response.status_code == 200, response.text
    for text, prediction in zip(texts, response.json()["predictions"], strict=True):
        np.testing.assert_allclose(prediction["logits"], _alone(model, tokenizer, text), rtol=1e-4, atol=1e-5)
    explained = client.post("/explain/t5", json={"inputs": texts, "target": 1})
    assert explained.status_code == 200, explained.text
    for text, explanation in zip(texts, explained.json()["explanations"], strict=True):
        alone = client.post("/explain/t5", json={"inputs": [text], "target": 1}).json()["explanations"][0]
        np.testing.assert_allclose(explanation["relevance"], alone["relevance"], rtol=1e-5, atol=1e-7)
        assert explanation["logit"] == pytest.approx(float(_alone(model, tokenizer, text)[1]), rel=1e-4, abs=1e-5)
