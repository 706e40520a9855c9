"""Text model folders: token-id graphs with an attention mask in model.json, the tokenizer beside them, and the
loader's refusals when the pieces do not fit together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from models.nets import TextClassifier
from service.store.format import load_model
from service.store.from_module import ConversionError, convert_module
from tests.support.modelfiles import (
    VOCABULARY,
    assert_refused,
    edit_json,
    text_fields,
    tiny_tokenizer,
    write_text_model,
)


def _input_nodes(directory: Path) -> list[dict[str, Any]]:
    document = json.loads((directory / "model.json").read_text())
    return [node for node in document["graph"]["nodes"] if node["op"] == "input"]


def test_a_converted_text_model_reproduces_the_module_on_padded_batches(tmp_path):
    directory = write_text_model(tmp_path / "words")
    assert sorted(p.name for p in directory.iterdir()) == ["model.json", "tokenizer.json", "weights.safetensors"]
    first, mask = _input_nodes(directory)
    assert first["attrs"] == {"dtype": "int64", "max_tokens": 12}
    assert mask["attrs"]["argument"] == "attention_mask" and mask["attrs"]["dtype"] == "int64"
    loaded = load_model(directory)
    torch.manual_seed(0)
    module = TextClassifier(len(VOCABULARY), 2, 12, width=16, heads=2, blocks=1).eval()  # the same seeded weights
    ids = torch.randint(0, len(VOCABULARY), (3, 9))
    attention = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 2 + [0] * 7])
    with torch.no_grad():
        expected = module(ids, attention_mask=attention)
    got = loaded.prepared.predict(ids, {"attention_mask": attention})
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert loaded.text is not None and loaded.text.pad_id == VOCABULARY.index("[PAD]")


def test_a_text_model_needs_its_tokenizer_and_only_a_text_model_takes_one(tmp_path):
    module = TextClassifier(len(VOCABULARY), 2, 12, width=16, heads=2, blocks=1)
    with pytest.raises(ConversionError, match="a text model needs its tokenizer"):
        convert_module(module, tmp_path / "m", text_fields())
    with pytest.raises(ConversionError, match="only a text model takes one"):
        convert_module(torch.nn.Linear(3, 2), tmp_path / "n", {"input": {"kind": "tensor", "shape": [3]},
                                                              "classes": ["a", "b"]}, tokenizer=tiny_tokenizer())


def _set_input(attrs: dict[str, Any]):
    return lambda doc: doc["graph"]["nodes"][0]["attrs"].update(attrs)


def _mask_node(doc: dict[str, Any]) -> dict[str, Any]:
    return next(n for n in doc["graph"]["nodes"][1:] if n["op"] == "input")


@pytest.mark.parametrize(("corrupt", "message"), [
    (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json is missing"),
    (lambda d: edit_json(d, lambda doc: doc["input"]["text"].update(pad_token="<pad>")),
     "pad_token '<pad>' is not in the tokenizer's vocabulary"),
    (lambda d: edit_json(d, lambda doc: doc["input"]["text"].update(mask_argument=None)),
     "the graph's extra inputs are ['attention_mask'], but the input spec passes []"),
    (lambda d: edit_json(d, lambda doc: doc["input"].update(shape=[40])),
     "the input's shape [40] has more tokens than the graph takes (12)"),
    (lambda d: edit_json(d, lambda doc: doc["input"].pop("text")), "a text input needs \"text\""),
    (lambda d: edit_json(d, _set_input({"dtype": "float32"})), "the input's dtype must be one of ['int64', 'int32']"),
    (lambda d: edit_json(d, _set_input({"max_tokens": 0})), "max_tokens must be a positive int"),
    (lambda d: edit_json(d, _set_input({"colour": 1})), "unknown attribute(s) ['colour'] for an input"),
    (lambda d: edit_json(d, lambda doc: _mask_node(doc)["attrs"].update(argument="not a name")),
     "argument must be the forward's keyword"),
    (lambda d: edit_json(d, lambda doc: _mask_node(doc)["attrs"].update(dtype="complex64")),
     "an extra input's dtype must be one of"),
    (lambda d: edit_json(d, lambda doc: _mask_node(doc)["attrs"].update(shape=[{"expr": "import os"}])),
     "size expression"),
    (lambda d: edit_json(d, lambda doc: _mask_node(doc)["attrs"].pop("shape")),
     "an extra input needs the attribute(s) ['shape']"),
    (lambda d: edit_json(d, lambda doc: doc.update(input={"kind": "tensor", "shape": [12]})),
     "the graph's input takes token ids (it has a dtype) exactly when the input kind is text"),
])
def test_text_models_that_do_not_fit_together_are_refused(tmp_path, corrupt, message):
    directory = write_text_model(tmp_path / "broken")
    corrupt(directory)
    assert_refused(directory, message)


def _larger_tokenizer(directory: Path) -> None:
    """tokenizer.json replaced by one whose vocabulary has five more tokens than the model's embedding table."""
    vocabulary = [*VOCABULARY, "extra", "more", "words", "than", "rows"]
    made = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocabulary)}, unk_token="[UNK]"))
    made.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    made.save(str(directory / "tokenizer.json"))


def test_a_tokenizer_whose_ids_run_past_the_embedding_table_is_refused(tmp_path):
    """Every id the tokenizer gives must index the table that reads the token ids: ids past it would be a 500
    IndexError on every text holding such a token."""
    directory = write_text_model(tmp_path / "mismatched")
    _larger_tokenizer(directory)
    assert_refused(directory, f"tokenizer.json gives token ids up to {len(VOCABULARY) + 4}, past the "
                   f"{len(VOCABULARY)} rows of the embedding table")
