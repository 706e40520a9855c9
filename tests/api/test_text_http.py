"""Text over HTTP on the shipped sentiment model: predictions, token relevance with offsets and top words in JSON,
the HTML page and the PNG of the coloured text, bad texts, and batches of texts of different lengths."""

from __future__ import annotations

import asyncio
import io
from html.parser import HTMLParser
from typing import Any

import httpx2
import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer

from service import inference
from service.api.app import create_app
from service.render.colormap import colorize
from service.settings import Settings
from tests.conftest import MODELS, shipped_models

MODEL = "sentiment"
REVIEW = "The acting was wonderful, but the plot was a terrible mess."


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """The model's tokenizer.json read by tokenizers itself (not through the service)."""
    return Tokenizer.from_file(str(MODELS / MODEL / "tokenizer.json"))


def test_predict_gives_what_the_model_gives_for_the_tokenized_text(client, registry, tokenizer):
    texts = [REVIEW, "a wonderful and heartfelt film", "the worst, most boring film"]
    response = client.post(f"/predict/{MODEL}", json={"inputs": texts})
    assert response.status_code == 200, response.text
    entry = registry.get(MODEL)
    for text, prediction in zip(texts, response.json()["predictions"], strict=True):
        ids = torch.tensor([tokenizer.encode(text).ids])
        logits = entry.prepared.predict(ids, {"attention_mask": torch.ones_like(ids)})[0]
        assert prediction["logits"] == pytest.approx(logits.tolist(), rel=1e-5, abs=1e-6)
        assert prediction["label"] == ["negative", "positive"][int(logits.argmax())]
    labels = [p["label"] for p in response.json()["predictions"]]
    assert labels[1:] == ["positive", "negative"]


def _words(tokenizer: Tokenizer, text: str, relevance: list[float]) -> list[tuple[str, float]]:
    """Word relevance recomputed from tokenizers' own word ids: (word text, summed relevance) in text order."""
    encoding = tokenizer.encode(text)
    spans: dict[int, list[Any]] = {}
    for word, (start, end), value in zip(encoding.word_ids, encoding.offsets, relevance, strict=True):
        if word is not None:
            span = spans.setdefault(word, [start, end, 0.0])
            span[1], span[2] = end, span[2] + value
    return [(text[start:end], total) for start, end, total in spans.values()]


def test_explain_gives_each_token_with_offsets_and_the_top_words_from_its_relevance(client, tokenizer):
    response = client.post(f"/explain/{MODEL}", json={"inputs": [REVIEW], "target": "positive"})
    assert response.status_code == 200, response.text
    explanation = response.json()["explanations"][0]
    text = explanation["text"]
    encoding = tokenizer.encode(REVIEW)
    assert [t["token"] for t in text["tokens"]] == encoding.tokens
    assert [[t["start"], t["end"]] for t in text["tokens"]] == [list(o) for o in encoding.offsets]
    assert [t["special"] for t in text["tokens"]] == [bool(m) for m in encoding.special_tokens_mask]
    relevance = [t["relevance"] for t in text["tokens"]]
    assert relevance == pytest.approx(explanation["relevance"])
    assert explanation["relevance_sum"] == pytest.approx(sum(relevance), rel=1e-5, abs=1e-6)
    assert explanation["conservation_delta"] == pytest.approx(explanation["logit"] - sum(relevance), abs=1e-5)
    assert not text["truncated"]
    words = _words(tokenizer, REVIEW, relevance)
    positive = sorted(((w, r) for w, r in words if r > 0), key=lambda item: -item[1])[:10]
    negative = sorted(((w, r) for w, r in words if r < 0), key=lambda item: item[1])[:10]
    assert [(w["word"], w["relevance"]) for w in text["top_positive"]] == [(w, pytest.approx(r)) for w, r in positive]
    assert [(w["word"], w["relevance"]) for w in text["top_negative"]] == [(w, pytest.approx(r)) for w, r in negative]
    for word in text["top_positive"] + text["top_negative"]:
        assert REVIEW[word["start"]:word["end"]] == word["word"]
    assert text["top_positive"][0]["word"] == "wonderful"
    assert "terrible" in [w["word"] for w in text["top_negative"][:3]]


class _Tokens(HTMLParser):
    """The token spans of an explanation page: (text, data-relevance, background colour)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[list[Any]] = []
        self._open = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "span" and named.get("class") == "token":
            style = str(named["style"])
            rgb = tuple(int(v) for v in style[style.index("(") + 1:style.index(")")].split(","))
            self.found.append(["", float(str(named["data-relevance"])), rgb])
            self._open = True

    def handle_endtag(self, tag: str) -> None:
        self._open = False if tag == "span" else self._open

    def handle_data(self, data: str) -> None:
        if self._open:
            self.found[-1][0] += data


def test_the_html_page_colours_each_word_piece_by_its_relevance(client):
    body = {"inputs": [REVIEW], "target": "positive"}
    numbers = client.post(f"/explain/{MODEL}", json=body).json()["explanations"][0]["text"]["tokens"]
    response = client.post(f"/explain/{MODEL}", json={**body, "format": "html"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<script" not in response.text and "http" not in response.text  # self-contained
    parser = _Tokens()
    parser.feed(response.text)
    words = [t for t in numbers if not t["special"]]
    assert [span[0] for span in parser.found] == [REVIEW[t["start"]:t["end"]] for t in words]
    peak = max(abs(t["relevance"]) for t in words)
    for (_, shown, rgb), token in zip(parser.found, words, strict=True):
        assert shown == pytest.approx(token["relevance"], rel=1e-5)
        assert rgb == tuple(int(c) for c in colorize(np.array(token["relevance"] / peak)))
    assert "relevance: red for the class, blue against" in response.text
    assert client.post(f"/explain/{MODEL}", json=body, headers={"Accept": "text/html"}).headers[
        "content-type"].startswith("text/html")


def test_the_png_draws_the_strongest_tokens_in_full_colour(client):
    body = {"inputs": [REVIEW, "a wonderful film"], "target": "positive"}
    tokens = [e["text"]["tokens"] for e in client.post(f"/explain/{MODEL}", json=body).json()["explanations"]]
    response = client.post(f"/explain/{MODEL}", json={**body, "format": "png"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    colours = {tuple(int(c) for c in pixel) for pixel in image.reshape(-1, 3)}
    for found in tokens:
        words = [t["relevance"] for t in found if not t["special"]]
        strongest = max(words, key=abs)
        assert tuple(int(c) for c in colorize(np.array(strongest / max(map(abs, words))))) in colours


@pytest.mark.parametrize(("instance", "message"), [
    ("", "inputs[0]: the text is empty"),
    (" \n ", "inputs[0]: the text is empty"),
    (3, "inputs[0]: a text model takes strings, got a number"),
    ([["a"]], "inputs[0]: a text model takes strings, got an array"),
])
def test_bad_texts_get_422_saying_how_to_fix_them(client, instance, message):
    for verb in ("predict", "explain"):
        response = client.post(f"/{verb}/{MODEL}", json={"inputs": [instance]})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_input"
        assert message in response.json()["error"]["message"]


def test_a_lone_surrogate_is_a_422_and_bytes_that_are_not_utf8_a_400(client):
    escaped = b'{"inputs": ["bad \\ud800 text"]}'  # valid JSON, but no Unicode text
    response = client.post(f"/explain/{MODEL}", content=escaped, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "inputs[0]: not valid Unicode" in response.json()["error"]["message"]
    latin1 = b'{"inputs": ["caf\xe9 au lait"]}'
    response = client.post(f"/explain/{MODEL}", content=latin1, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert "byte 0xe9 is not UTF-8; JSON is sent as UTF-8 at character 16" in response.json()["error"]["message"]


def test_a_long_text_is_cut_to_the_model_s_tokens_and_the_answer_says_so(client, tokenizer):
    long = " ".join(["the film was wonderful"] * 40)
    explanation = client.post(f"/explain/{MODEL}", json={"inputs": [long]}).json()["explanations"][0]["text"]
    assert explanation["truncated"]
    assert len(explanation["tokens"]) == 64
    assert explanation["tokens"][-1]["token"] == "[SEP]"


def test_too_many_tokens_in_one_request_is_a_413(registry):
    settings = Settings(models_dir=MODELS, max_request_tokens=20)
    app = create_app(settings, registry)

    async def post() -> httpx2.Response:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(f"/explain/{MODEL}", json={"inputs": ["a wonderful film"] * 5})

    response = asyncio.run(post())
    assert response.status_code == 413
    assert "the texts have 25 tokens in all; the limit per request is 20 (LRP_MAX_REQUEST_TOKENS)" in response.json()[
        "error"]["message"]


def test_html_is_for_text_models(client):
    response = client.post("/explain/digits", json={"inputs": [[[0] * 8] * 8], "format": "html"})
    assert response.status_code == 422
    assert "format html draws text explanations" in response.json()["error"]["message"]
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # what a browser sends
    answer = client.post("/explain/digits", json={"inputs": [[[0] * 8] * 8]}, headers={"Accept": browser})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"


SENTENCES = ["wonderful", "a terrible film", "the plot was not good at all", REVIEW,
             "I loved every minute of this warm, funny and clever story", "boring"]


def _text_bodies() -> list[dict[str, Any]]:
    bodies = []
    for i in range(64):
        texts = [SENTENCES[(i + j) % len(SENTENCES)] for j in range(1 + i % 3)]
        bodies.append({"inputs": texts, "target": None if i % 2 else "negative"})
    return bodies


async def _explain_all(app: Any, bodies: list[dict[str, Any]], concurrently: bool) -> list[dict[str, Any]]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
        async def post(body: dict[str, Any]) -> dict[str, Any]:
            response = await client.post(f"/explain/{MODEL}", json=body)
            assert response.status_code == 200, response.text
            answer: dict[str, Any] = response.json()
            return answer

        if concurrently:
            return list(await asyncio.gather(*(post(body) for body in bodies)))
        return [await post(body) for body in bodies]


def test_64_concurrent_texts_of_different_lengths_each_equal_the_same_request_alone():
    settings = Settings(models_dir=MODELS, max_batch_size=32, max_delay_ms=20)
    bodies = _text_bodies()
    alone = asyncio.run(_explain_all(create_app(settings, shipped_models(settings)), bodies, concurrently=False))
    together = asyncio.run(_explain_all(create_app(settings, shipped_models(settings)), bodies, concurrently=True))
    for single, batched in zip(alone, together, strict=True):
        for one, many in zip(single["explanations"], batched["explanations"], strict=True):
            assert [t["token"] for t in many["text"]["tokens"]] == [t["token"] for t in one["text"]["tokens"]]
            assert many["target"] == one["target"]
            expected = np.asarray(one["relevance"])
            scale = max(np.abs(expected).max(), abs(one["logit"]))
            assert np.abs(np.asarray(many["relevance"]) - expected).max() <= 1e-5 * scale
            assert many["logit"] == pytest.approx(one["logit"], rel=1e-5, abs=1e-5)


def test_a_text_batch_holds_no_more_token_positions_than_the_budget(monkeypatch):
    budget = 40  # texts x the longest of them, padding included
    batches: list[list[int]] = []
    original = inference.run_batch

    def recording(entry, key, samples):
        batches.append([int(sample.x.shape[-1]) for sample in samples])
        return original(entry, key, samples)

    monkeypatch.setattr(inference, "run_batch", recording)
    settings = Settings(models_dir=MODELS, max_batch_size=32, max_delay_ms=20, max_batch_tokens=budget)
    bodies = _text_bodies()[:24]
    together = asyncio.run(_explain_all(create_app(settings, shipped_models(settings)), bodies, concurrently=True))
    tokens = Tokenizer.from_file(str(MODELS / MODEL / "tokenizer.json"))
    sent = sorted(len(tokens.encode(text).ids) for body in bodies for text in body["inputs"])
    assert sorted(size for batch in batches for size in batch) == sent  # every text ran once, at its own length
    assert all(len(batch) * max(batch) <= budget for batch in batches if len(batch) > 1)
    assert any(len(batch) > 1 for batch in batches)
    assert [len(answer["explanations"]) for answer in together] == [len(body["inputs"]) for body in bodies]
