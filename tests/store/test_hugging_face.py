"""The Hugging Face converter on tiny random configurations (the classes and loaders a real checkpoint uses): the
written folder serves what the Hugging Face objects compute, texts through its tokenizer and images through its
processor's scaling."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from service.__main__ import main
from service.loader import load_entry
from service.modality.instances import decode_upload
from service.settings import Settings
from service.store.format import load_model
from service.store.from_module import ConversionError

T = pytest.importorskip("transformers")
from service.store.from_hugging_face import convert_hugging_face  # noqa: E402  (needs transformers only to be tested)

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was", "good", "bad", "plot", "great", "not",
         "##s", "a", "!"]
TEXTS = ["the film was good!", "a bad plot", "the films was not great , not good at all"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    tokenizer = T.BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)})
    config = T.BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=24, num_labels=2,
                          id2label={0: "bad", 1: "good"}, label2id={"bad": 0, "good": 1})
    torch.manual_seed(0)
    return T.BertForSequenceClassification(config).eval(), tokenizer


def test_a_sequence_classifier_and_its_tokenizer_serve_what_hugging_face_computes(tmp_path, bert):
    model, tokenizer = bert
    convert_hugging_face(model, tmp_path / "reviews", tokenizer=tokenizer)
    loaded = load_model(tmp_path / "reviews")
    assert loaded.spec.classes == ["bad", "good"] and loaded.spec.input.shape == [24]
    assert loaded.text is not None
    rows = [torch.tensor(loaded.text.encode(text, "x").ids) for text in TEXTS]
    ids, extra, _ = loaded.text.pad(rows)
    reference = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(ids, reference["input_ids"])
    assert torch.equal(extra["attention_mask"], reference["attention_mask"])
    with torch.no_grad():
        expected = model(**reference).logits
    torch.testing.assert_close(loaded.prepared.predict(ids, extra), expected, rtol=1e-5, atol=1e-6)
    integers = [key for key, tensor in load_file(str(tmp_path / "reviews" / "weights.safetensors")).items()
                if not tensor.is_floating_point()]
    assert integers  # BERT's position and token-type id buffers, kept as integers


def test_an_image_classifier_and_its_processor_serve_what_hugging_face_computes(tmp_path):
    config = T.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, num_labels=3)
    torch.manual_seed(0)
    model = T.ViTForImageClassification(config).eval()
    processor = T.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6],
                                    image_std=[0.2, 0.25, 0.3])
    convert_hugging_face(model, tmp_path / "pictures", image_processor=processor)
    loaded = load_model(tmp_path / "pictures")
    assert loaded.spec.input.shape == [3, 32, 32] and loaded.spec.classes == ["LABEL_0", "LABEL_1", "LABEL_2"]
    for height, width in ((32, 32), (45, 70), (20, 24)):  # the model's size, larger and smaller: resized alike
        pixels = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
        decoded = decode_upload(loaded.spec.input, buffer.getvalue(), max_pixels=10_000)
        with torch.no_grad():
            expected = model(**processor(images=Image.fromarray(pixels, "RGB"), return_tensors="pt")).logits
        torch.testing.assert_close(loaded.prepared.predict(decoded.x), expected, rtol=1e-5, atol=1e-5)


def test_the_command_converts_a_saved_checkpoint_and_keeps_an_existing_model(tmp_path, bert, capsys):
    checkpoint = _checkpoint(bert, tmp_path)
    out = tmp_path / "models"
    args = ["convert-hf", str(checkpoint), "--name", "reviews", "--models-dir", str(out), "--max-tokens", "16",
            "--truncation", "truncate"]
    assert main(args) == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "reviews").iterdir()) == ["model.json", "tokenizer.json",
                                                                  "weights.safetensors"]
    loaded = load_model(out / "reviews")
    assert loaded.spec.input.shape == [16] and loaded.spec.input.text is not None
    assert loaded.spec.input.text.truncation == "truncate"
    assert main(args) == 1
    assert "exists; pass --force to replace it" in capsys.readouterr().err


def test_a_checkpoint_of_another_kind_is_refused_with_what_the_converter_takes(tmp_path, bert, capsys):
    model, _ = bert
    T.BertModel(model.config).save_pretrained(tmp_path / "encoder")
    assert main(["convert-hf", str(tmp_path / "encoder"), "--name", "x", "--models-dir", str(tmp_path)]) == 1
    assert ("the converter takes ...ForSequenceClassification, ...ForTokenClassification, ...ForQuestionAnswering "
            "and ...ForImageClassification") in capsys.readouterr().err


def test_the_converter_needs_exactly_one_of_tokenizer_and_processor_and_a_pad_token(tmp_path: Path, bert):
    model, tokenizer = bert
    with pytest.raises(ConversionError, match="give the tokenizer of a text model or the image processor"):
        convert_hugging_face(model, tmp_path / "m")
    without_pad = T.BertTokenizerFast.from_pretrained(_saved(tokenizer, tmp_path), pad_token=None)
    without_pad.pad_token = None
    with pytest.raises(ConversionError, match="the tokenizer has no pad token"):
        convert_hugging_face(model, tmp_path / "m", tokenizer=without_pad)


def _checkpoint(bert: tuple[object, object], directory: Path) -> Path:
    """The tiny BERT and its tokenizer saved as a Hugging Face checkpoint folder."""
    model, tokenizer = bert
    model.save_pretrained(directory / "checkpoint")  # type: ignore[attr-defined]
    tokenizer.save_pretrained(directory / "checkpoint")  # type: ignore[attr-defined]
    return directory / "checkpoint"


def _saved(tokenizer: object, directory: Path) -> Path:
    tokenizer.save_pretrained(directory / "tokenizer")  # type: ignore[attr-defined]
    return directory / "tokenizer"


def test_examples_given_to_the_command_are_measured_and_choose_the_default(tmp_path, bert, capsys):
    checkpoint = _checkpoint(bert, tmp_path)
    examples = tmp_path / "examples.json"
    examples.write_text(json.dumps(["the film was good", "a bad plot", "great acting but a bad film"]))
    out = tmp_path / "models"
    assert main(["convert-hf", str(checkpoint), "--name", "reviews", "--models-dir", str(out), "--examples",
                 str(examples)]) == 0, capsys.readouterr().err
    entry = load_entry(out / "reviews", torch.device("cpu"), Settings(models_dir=out))
    assert entry.spec.evaluation is not None and entry.spec.evaluation.examples == json.loads(examples.read_text())
    assert entry.faithfulness is not None and "attnlrp" in entry.faithfulness
    assert main(["choose-default", str(out / "reviews"), "--write"]) == 0, capsys.readouterr().err
    chosen = load_model(out / "reviews").spec
    assert chosen.evaluation is not None and len(chosen.evaluation.comparison) > 2
    assert (chosen.default_composite, chosen.default_params) == (chosen.evaluation.comparison[0].composite,
                                                                 chosen.evaluation.comparison[0].params)
    examples.write_text(json.dumps({"not": "a list"}))
    assert main(["convert-hf", str(checkpoint), "--name", "other", "--models-dir", str(out), "--examples",
                 str(examples)]) == 1
    assert "must hold a JSON list of instances" in capsys.readouterr().err
