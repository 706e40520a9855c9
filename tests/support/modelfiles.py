"""Helpers that write small model directories for loader and registry tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from torch import nn

from models.nets import TextClassifier
from service.errors import ModelFileError
from service.lrp.capture import graph_from_module
from service.store.format import load_model, save_model, spec_from_graph
from service.store.from_module import convert_module


def tiny_cnn() -> nn.Module:
    """conv-BN-ReLU-flatten-linear on 1x4x4, 3 classes, float32, seeded."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


TENSOR_FIELDS: dict[str, Any] = {"input": {"kind": "tensor", "shape": [1, 4, 4]}, "classes": ["a", "b", "c"]}


def write_model(directory: Path, module: nn.Module | None = None, **fields: Any) -> Path:
    """Write `module` (default: tiny_cnn) with TENSOR_FIELDS overridden by `fields`; return the directory."""
    merged = {**TENSOR_FIELDS, **fields}
    shape = merged["input"]["shape"]
    spec, tensors = spec_from_graph(graph_from_module(module or tiny_cnn(), torch.zeros(2, *shape)), **merged)
    save_model(directory, spec, tensors)
    return directory


def assert_refused(directory: Path, message: str) -> None:
    """Loading `directory` fails with a ModelFileError naming the model first, then saying `message`."""
    with pytest.raises(ModelFileError) as raised:
        load_model(directory)
    assert str(raised.value).startswith(f"model '{directory.name}': ")
    assert message in str(raised.value)


def edit_json(directory: Path, change: Any) -> None:
    """Apply `change(document)` to model.json in place."""
    path = directory / "model.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "film", "was", "not", "good", "bad", "great", "plot", "a",
              "wonder", "##ful", "##ly", "!", ",", "acting", "but"]


def tiny_tokenizer() -> Tokenizer:
    """A lower-casing WordPiece tokenizer over VOCABULARY that wraps each text in [CLS] ... [SEP]."""
    made = Tokenizer(models.WordPiece({token: i for i, token in enumerate(VOCABULARY)}, unk_token="[UNK]"))
    made.normalizer = normalizers.BertNormalizer(lowercase=True)
    made.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    made.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", VOCABULARY.index("[CLS]")),
                                                 ("[SEP]", VOCABULARY.index("[SEP]"))])
    return made


def text_fields(max_tokens: int = 12, **text: Any) -> dict[str, Any]:
    """model.json fields of a two-class text model taking at most `max_tokens` tokens; `text` overrides settings."""
    return {"input": {"kind": "text", "shape": [max_tokens], "text": {"pad_token": "[PAD]", **text}},
            "classes": ["negative", "positive"], "default_composite": "attnlrp"}


def write_text_model(directory: Path, max_tokens: int = 12, **text: Any) -> Path:
    """A seeded one-block TextClassifier over tiny_tokenizer, converted into `directory`."""
    torch.manual_seed(0)
    module = TextClassifier(len(VOCABULARY), 2, max_tokens, width=16, heads=2, blocks=1)
    convert_module(module, directory, text_fields(max_tokens, **text), tokenizer=tiny_tokenizer())
    return directory
