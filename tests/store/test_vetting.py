"""A model's files are vetted in a child process before the server parses them; a text model's tokenizer is
probed there with adversarial texts: a regular expression that panics or backtracks for long is refused at load (PUT
and start-up) naming the part of the tokenizer, the text and how; a child that falls silent is killed; a text that
still makes the tokenizer panic while serving is a 422 to that request only; tokenizing lets go of the GIL."""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import SecretStr
from tokenizers import Regex, normalizers, pre_tokenizers

from service.api.app import create_app
from service.errors import InvalidInputError, ModelFileError
from service.loader import load_directory
from service.settings import LIMITS, ModelLimits, Settings
from service.store.format import load_model
from service.vetting import run
from tests.conftest import MODELS
from tests.support.modelfiles import tiny_tokenizer, write_text_model

TOKEN = "a-long-enough-admin-token"
RUNAWAY = "(a+)+$"  # the pattern: exponential backtracking on "aaa...a" followed by anything else
QUADRATIC = r"\s+$"  # each start position scans the whole run: 8,192 spaces take ~0.25 s on this machine
UNPROBED = r"(\x{0436}+)+$"  # the same blow-up on a letter no probe text is made of


def _with_pre_tokenizer(directory: Path, *patterns: str) -> Path:
    """A text model in `directory` whose tokenizer first splits on each pattern in turn (then as BERT does)."""
    write_text_model(directory)
    made = tiny_tokenizer()
    made.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in patterns] + [pre_tokenizers.BertPreTokenizer()])
    made.save(str(directory / "tokenizer.json"))
    return directory


def _refusal(directory: Path, limits: ModelLimits = LIMITS) -> str:
    with pytest.raises(ModelFileError) as raised:
        load_model(directory, limits=limits)
    return str(raised.value)


def test_a_tokenizer_that_is_missing_or_broken_is_refused(tmp_path):
    directory = write_text_model(tmp_path / "m")
    (directory / "tokenizer.json").unlink()
    assert _refusal(directory) == (f"model 'm': tokenizer.json is missing from {directory} (a text model needs its "
                                   "tokenizer, saved by Hugging Face tokenizers' Tokenizer.save)")
    (directory / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    assert _refusal(directory).startswith("model 'm': tokenizer.json is not a tokenizers file: ")


def test_a_regex_that_backtracks_without_end_is_refused_naming_it(tmp_path):
    directory = _with_pre_tokenizer(tmp_path / "m", r"\d+", RUNAWAY)
    started = time.perf_counter()
    message = _refusal(directory)
    assert time.perf_counter() - started < 30  # a bound a hang would pass, not a speed measurement
    assert message.startswith("model 'm': tokenizer.json: pre_tokenizer.pretokenizers[1] (Split '(a+)+$') fails on "
                              "'a' repeated to 32 characters, then '7': Onig: Regex search error: "
                              "retry-limit-in-match over; a tokenizer must take any text in bounded time")
    assert "LRP_TOKENIZER_PROBE_MS" in message


def test_a_quadratic_regex_is_refused_under_the_limit_and_taken_over_it(tmp_path):
    directory = _with_pre_tokenizer(tmp_path / "m", QUADRATIC)
    message = _refusal(directory, ModelLimits(tokenize_ms=20))
    assert message.startswith("model 'm': tokenizer.json: pre_tokenizer.pretokenizers[0] (Split '\\\\s+$') takes ")
    assert "on ' ' repeated to 8192 characters, then 'a' (the limit is 20 ms)" in message
    assert load_model(directory, limits=ModelLimits(tokenize_ms=60_000)).name == "m"


def test_a_normalizer_s_regex_is_probed_too(tmp_path):
    directory = write_text_model(tmp_path / "m")
    made = tiny_tokenizer()
    made.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex("(7+)+$"), "")])
    made.save(str(directory / "tokenizer.json"))
    assert _refusal(directory).startswith("model 'm': tokenizer.json: normalizer.normalizers[1] (Replace '(7+)+$') "
                                          "fails on '7' repeated to 32 characters, then 'a'")


def test_ordinary_tokenizers_pass(tmp_path):
    llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
    assert load_model(_with_pre_tokenizer(tmp_path / "l", llama3)).name == "l"
    assert load_model(MODELS / "sentiment").name == "sentiment"


def test_a_child_that_stops_answering_is_killed_and_one_that_dies_is_reported(tmp_path, monkeypatch):
    directory = _with_pre_tokenizer(tmp_path / "m", r"\d+")
    hang = "print('trying the tokenizer on a text', flush=True); import time; time.sleep(60)"
    monkeypatch.setattr(run, "command", lambda *_: [sys.executable, "-c", hang])
    started = time.perf_counter()
    assert _refusal(directory) == "model 'm': the tokenizer on a text: still running after 1.1 s"
    assert time.perf_counter() - started < 30
    monkeypatch.setattr(run, "command", lambda *_: [sys.executable, "-c", "import os; os._exit(3)"])
    assert _refusal(directory) == "model 'm': reading the files: the checking process ended with status 3"


def test_a_hostile_tokenizer_is_refused_by_put_and_at_start_up_and_the_others_serve(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(MODELS / "walkthrough", models / "walkthrough")
    _with_pre_tokenizer(models / "hostile", RUNAWAY)
    config = Settings(models_dir=models, admin_token=SecretStr(TOKEN))
    registry = load_directory(models, torch.device("cpu"), config)
    assert registry.names == ["walkthrough"]
    assert "(Split '(a+)+$') fails on" in registry.failures["hostile"]
    upload = _with_pre_tokenizer(tmp_path / "upload", RUNAWAY)
    files = {field: (name, (upload / name).read_bytes()) for field, name in
             [("model_json", "model.json"), ("weights", "weights.safetensors"), ("tokenizer", "tokenizer.json")]}
    with TestClient(create_app(config, registry)) as client:
        answer = client.put("/models/text", files=files, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "invalid_model"
        assert "pre_tokenizer.pretokenizers[0] (Split '(a+)+$') fails on" in answer.json()["error"]["message"]
        assert client.get("/models/text").status_code == 404
        assert client.post("/predict/walkthrough", json={"inputs": [[1.0, 0.8, 0.2]]}).status_code == 200


def test_a_text_that_still_makes_the_tokenizer_panic_is_a_422_to_that_request(tmp_path):
    models = tmp_path / "models"
    _with_pre_tokenizer(models / "text", UNPROBED)
    config = Settings(models_dir=models)
    with TestClient(create_app(config, load_directory(models, torch.device("cpu"), config))) as client:
        panic = client.post("/predict/text", json={"inputs": ["\u0436" * 40 + "!"]})
        assert panic.status_code == 422, panic.text
        assert panic.json()["error"]["message"].startswith(
            "inputs[0]: the model's tokenizer fails on this text (Onig: Regex search error: retry-limit-in-match")
        assert client.post("/predict/text", json={"inputs": ["the film was good"]}).status_code == 200


def test_tokenizing_lets_other_threads_run(tmp_path):
    """A slow text (23 letters of the unprobed blow-up: about half a second) leaves the GIL to the event loop."""
    _with_pre_tokenizer(tmp_path / "text", UNPROBED)
    text = load_model(tmp_path / "text").text
    assert text is not None
    ticks, done = [0], threading.Event()

    def tick() -> None:
        while not done.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    started = time.perf_counter()
    with contextlib.suppress(InvalidInputError):  # past the backtracking limit on a faster machine: a panic
        text.encode("\u0436" * 23 + "!", "inputs[0]")
    took = time.perf_counter() - started
    done.set()
    ticker.join()
    assert took > 0.05, "the text tokenized too fast to show anything; make the run longer"
    assert ticks[0] >= took / 0.01  # holding the GIL gave 2 ticks in 0.1 s; letting it go, one a millisecond
