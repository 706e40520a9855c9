"""Issue 25's families converted as the converter converts checkpoints. Text: each family with a WordPiece tokenizer
serves the Hugging Face logits on a padded batch of three texts, with finite relevance. Image: each family with its own
processor (transformers' classes, tiny random
configurations): for uploads of several sizes and aspect ratios, the served logits equal `model(**processor(image))`.
Each processor's pipeline is one the converter must say in model.json: a direct resize (ViT, Swin, BEiT), a resize then
a centre crop (DeiT, EfficientNet), the shorter edge then a crop (MobileNetV2, DINOv2's BitImageProcessor), ConvNeXt's
crop_pct (ConvNeXt V1 and V2, ResNet, RegNet) and LeViT's 256/224."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from service.modality.instances import decode_upload
from service.store.format import load_model
from service.store.from_module import ConversionError

T = pytest.importorskip("transformers")
from service.store.from_hugging_face import convert_hugging_face  # noqa: E402  (needs transformers only to be tested)
from tests.support.hub_families import TEXT_FAMILIES  # noqa: E402

VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
       "intermediate_size": 24, "num_labels": 3}
STAGES = {"num_labels": 3, "hidden_sizes": [8, 16], "depths": [1, 1]}
CONVNEXT_PROCESSOR = {"size": {"shortest_edge": 32}, "crop_pct": 0.875}  # shorter edge to int(32 / 0.875), crop 32
SHORTER_EDGE_THEN_CROP = {"size": {"shortest_edge": 36}, "crop_size": {"height": 32, "width": 32}}
Family = tuple[Callable[[], nn.Module], Callable[[], Any]]
FAMILIES: dict[str, Family] = {
    "ViT": (lambda: T.ViTForImageClassification(T.ViTConfig(**VIT)),
            lambda: T.ViTImageProcessor(size={"height": 32, "width": 32})),
    "DeiT": (lambda: T.DeiTForImageClassification(T.DeiTConfig(**VIT)),
             lambda: T.DeiTImageProcessor(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32})),
    "BEiT": (lambda: T.BeitForImageClassification(T.BeitConfig(**VIT, use_relative_position_bias=True)),
             lambda: T.BeitImageProcessor(size={"height": 32, "width": 32})),
    "Swin": (lambda: T.SwinForImageClassification(T.SwinConfig(
        image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[2, 2], window_size=4, num_labels=3)),
             lambda: T.ViTImageProcessor(size={"height": 32, "width": 32}, resample=3)),
    "ConvNeXt": (lambda: T.ConvNextForImageClassification(T.ConvNextConfig(**STAGES, num_stages=2)),
                 lambda: T.ConvNextImageProcessor(**CONVNEXT_PROCESSOR)),
    "ConvNeXt V2": (lambda: T.ConvNextV2ForImageClassification(T.ConvNextV2Config(**STAGES, num_stages=2)),
                    lambda: T.ConvNextImageProcessor(**CONVNEXT_PROCESSOR)),
    "ResNet": (lambda: T.ResNetForImageClassification(T.ResNetConfig(**STAGES, embedding_size=8)),
               lambda: T.ConvNextImageProcessor(**CONVNEXT_PROCESSOR)),
    "RegNet": (lambda: T.RegNetForImageClassification(T.RegNetConfig(**STAGES, embedding_size=8, groups_width=8)),
               lambda: T.ConvNextImageProcessor(**CONVNEXT_PROCESSOR)),
    "MobileNetV2": (lambda: T.MobileNetV2ForImageClassification(T.MobileNetV2Config(
        image_size=32, num_labels=3, depth_multiplier=0.35)),
                    lambda: T.MobileNetV2ImageProcessor(**SHORTER_EDGE_THEN_CROP)),
    "EfficientNet": (lambda: T.EfficientNetForImageClassification(T.EfficientNetConfig(
        num_labels=3, image_size=32, width_coefficient=0.25, depth_coefficient=0.2, hidden_dim=320)),
                     lambda: T.EfficientNetImageProcessor(size={"height": 40, "width": 40}, do_center_crop=True,
                                                          crop_size={"height": 32, "width": 32})),
    "DINOv2": (lambda: T.Dinov2ForImageClassification(T.Dinov2Config(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_labels=3)),
               lambda: T.BitImageProcessor(**SHORTER_EDGE_THEN_CROP)),
    "LeViT": (lambda: T.LevitForImageClassification(T.LevitConfig(
        num_labels=3, image_size=64, hidden_sizes=[16, 24, 32], num_attention_heads=[2, 2, 2], depths=[1, 1, 1],
        key_dim=[8, 8, 8])),
              lambda: T.LevitImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})),
}
UPLOADS = ((57, 41), (30, 70), (64, 64), (120, 45))  # (width, height): wider, taller, square, panoramic


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("family", FAMILIES)
def test_the_family_converts_with_its_processor_and_serves_its_logits_at_every_size(tmp_path: Path, family: str):
    make_model, make_processor = FAMILIES[family]
    torch.manual_seed(0)
    model, processor = make_model().eval(), make_processor()
    convert_hugging_face(model, tmp_path / "m", image_processor=processor)
    loaded = load_model(tmp_path / "m")
    generator = np.random.default_rng(1)
    for width, height in UPLOADS:
        pixels = generator.integers(0, 256, (height, width, 3), dtype=np.uint8)
        decoded = decode_upload(loaded.spec.input, png(pixels), max_pixels=1_000_000)
        with torch.no_grad():
            expected = model(**processor(images=Image.fromarray(pixels, "RGB"), return_tensors="pt")).logits
        torch.testing.assert_close(loaded.prepared.predict(decoded.x), expected, rtol=1e-4, atol=1e-4)


def test_a_processor_that_resizes_the_shorter_edge_without_a_crop_is_refused_saying_why(tmp_path: Path):
    model = FAMILIES["ViT"][0]().eval()
    with pytest.raises(ConversionError, match="shorter edge without a crop"):
        convert_hugging_face(model, tmp_path / "m", image_processor=T.ViTImageProcessor(size={"shortest_edge": 32}))
    assert not (tmp_path / "m").exists()


def test_a_processor_whose_pixels_model_json_cannot_reproduce_is_refused(tmp_path: Path):
    """A processor with its own resize (here, ViT's resize made to flip the image) is caught by the pixel check."""

    class Flipping(T.ViTImageProcessor):  # type: ignore[misc, name-defined]
        def resize(self, image: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
            resized: np.ndarray = super().resize(image, *args, **kwargs)
            return resized[..., ::-1, :].copy()

    model = FAMILIES["ViT"][0]().eval()
    with pytest.raises(ConversionError, match="not reproduced by model\\.json's image input"):
        convert_hugging_face(model, tmp_path / "m", image_processor=Flipping(size={"height": 32, "width": 32}))


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was", "good", "bad", "plot", "great", "not",
         "##s", "a", "!", ","]
TEXTS = ["the film was good!", "a bad plot", "the films was not great , not good at all"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return T.BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)})


@pytest.mark.parametrize("family", TEXT_FAMILIES)
def test_the_text_family_converts_and_serves_its_logits_and_finite_relevance_on_texts_of_three_lengths(
        tmp_path: Path, tokenizer: Any, family: str):
    torch.manual_seed(0)
    model = TEXT_FAMILIES[family]().eval()
    convert_hugging_face(model, tmp_path / "m", tokenizer=tokenizer)
    loaded = load_model(tmp_path / "m")
    assert loaded.text is not None
    ids, extra, _ = loaded.text.pad([torch.tensor(loaded.text.encode(text, "x").ids) for text in TEXTS])
    reference = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(ids, reference["input_ids"])
    with torch.no_grad():  # token ids and mask: all the converter passes (token types would be GPT-2 embeddings)
        expected = model(input_ids=reference["input_ids"], attention_mask=reference["attention_mask"]).logits
    explained = loaded.prepared.explain(ids, composite="attnlrp", extra=extra)
    torch.testing.assert_close(explained.logits, expected, rtol=1e-4, atol=1e-4)
    assert bool(torch.isfinite(explained.relevance).all())
