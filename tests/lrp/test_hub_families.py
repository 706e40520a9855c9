"""Every common Hugging Face classification family (issue 25's list), from tiny random configurations, captured from
the model objects and never patched: each gives the model's own logits on a batch and finite `attnlrp` relevance, and
a text's relevance in a padded batch equals its relevance alone (padding positions get none). The families that
stopped on mundane ops are named for them: `type_as` (Gemma), `where`/`min` on constants whose size follows the input
(Gemma 2, MPNet), `zeros_like`/`sign` (DeBERTa-v2), a relative position index filled through views (BEiT), in-place
dropout (MobileNetV2). Image families through their processors: tests/store/test_hub_families.py; parity with lxt:
tests/lrp/test_hugging_face.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from service.lrp import PreparedModel

T = pytest.importorskip("transformers")

TEXT = {"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 37, "num_labels": 3}
DECODER = {**TEXT, "num_key_value_heads": 2, "head_dim": 8, "pad_token_id": 0, "use_cache": False}
VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
       "intermediate_size": 37, "num_labels": 3}
STAGES = {"num_labels": 3, "hidden_sizes": [8, 16], "depths": [1, 1]}
TEXT_FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "BERT": lambda: T.BertForSequenceClassification(T.BertConfig(**TEXT)),
    "RoBERTa": lambda: T.RobertaForSequenceClassification(T.RobertaConfig(**TEXT, pad_token_id=1)),
    "DistilBERT": lambda: T.DistilBertForSequenceClassification(T.DistilBertConfig(
        vocab_size=50, dim=32, n_layers=2, n_heads=4, hidden_dim=37, num_labels=3)),
    "ALBERT": lambda: T.AlbertForSequenceClassification(T.AlbertConfig(**TEXT, embedding_size=16)),
    "ELECTRA": lambda: T.ElectraForSequenceClassification(T.ElectraConfig(**TEXT, embedding_size=16)),
    "XLM-RoBERTa": lambda: T.XLMRobertaForSequenceClassification(T.XLMRobertaConfig(**TEXT, pad_token_id=1)),
    "DeBERTa-v2 (zeros_like, sign)": lambda: T.DebertaV2ForSequenceClassification(T.DebertaV2Config(**TEXT)),
    "MPNet (min on constants whose size follows the tokens)": lambda: T.MPNetForSequenceClassification(
        T.MPNetConfig(**TEXT)),
    "ModernBERT (local and global attention)": lambda: T.ModernBertForSequenceClassification(
        T.ModernBertConfig(**TEXT, pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3,
                           global_attn_every_n_layers=2, local_attention=4)),
    "GPT-2": lambda: T.GPT2ForSequenceClassification(T.GPT2Config(
        vocab_size=50, n_embd=32, n_layer=2, n_head=4, num_labels=3, pad_token_id=0, bos_token_id=1,
        eos_token_id=1, use_cache=False)),
    "Llama": lambda: T.LlamaForSequenceClassification(T.LlamaConfig(**DECODER)),
    "Mistral": lambda: T.MistralForSequenceClassification(T.MistralConfig(**DECODER)),
    "Qwen2": lambda: T.Qwen2ForSequenceClassification(T.Qwen2Config(**DECODER)),
    "Qwen3": lambda: T.Qwen3ForSequenceClassification(T.Qwen3Config(**DECODER)),
    "Gemma (type_as in RMSNorm)": lambda: T.GemmaForSequenceClassification(T.GemmaConfig(**DECODER)),
    "Gemma 2 (softmax in float32, where/min on constants)": lambda: T.Gemma2ForSequenceClassification(
        T.Gemma2Config(**DECODER)),
    "Gemma 3": lambda: T.Gemma3TextForSequenceClassification(T.Gemma3TextConfig(**DECODER)),
    "Phi-3": lambda: T.Phi3ForSequenceClassification(T.Phi3Config(
        **{key: value for key, value in DECODER.items() if key != "head_dim"}, eos_token_id=1, bos_token_id=1)),
}
IMAGE_FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "ViT": lambda: T.ViTForImageClassification(T.ViTConfig(**VIT)),
    "DeiT": lambda: T.DeiTForImageClassification(T.DeiTConfig(**VIT)),
    "BEiT (a relative position index filled through views)": lambda: T.BeitForImageClassification(
        T.BeitConfig(**VIT, use_relative_position_bias=True)),
    "Swin": lambda: T.SwinForImageClassification(T.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4, num_labels=3)),
    "ConvNeXt": lambda: T.ConvNextForImageClassification(T.ConvNextConfig(**STAGES, num_stages=2)),
    "ConvNeXt V2": lambda: T.ConvNextV2ForImageClassification(T.ConvNextV2Config(**STAGES, num_stages=2)),
    "ResNet": lambda: T.ResNetForImageClassification(T.ResNetConfig(**STAGES, embedding_size=8)),
    "RegNet": lambda: T.RegNetForImageClassification(T.RegNetConfig(**STAGES, embedding_size=8, groups_width=8)),
    "MobileNetV2 (in-place dropout)": lambda: T.MobileNetV2ForImageClassification(T.MobileNetV2Config(
        image_size=32, num_labels=3, depth_multiplier=0.35, initializer_range=0.2)),
    "EfficientNet": lambda: T.EfficientNetForImageClassification(T.EfficientNetConfig(
        num_labels=3, image_size=32, width_coefficient=0.25, depth_coefficient=0.2, hidden_dim=320,
        initializer_range=0.5)),
    "DINOv2": lambda: T.Dinov2ForImageClassification(T.Dinov2Config(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_labels=3)),
    "LeViT": lambda: T.LevitForImageClassification(T.LevitConfig(
        num_labels=3, image_size=32, patch_size=16, hidden_sizes=[16, 24, 32], num_attention_heads=[2, 2, 2],
        depths=[1, 1, 1], key_dim=[8, 8, 8])),
}
# MobileNetV2's and EfficientNet's default initialisation (std 0.02) gives logits near 1e-26 at these sizes, whose
# relevance underflows float32: their weights are drawn wider.
LONG, SHORT = 9, 6  # the tokens of the two texts of a batch; the shorter one is padded on the right


@pytest.mark.parametrize("family", TEXT_FAMILIES)
def test_a_text_family_gives_its_logits_and_a_padded_text_the_relevance_it_gets_alone(family: str):
    torch.manual_seed(0)
    model = TEXT_FAMILIES[family]().eval()
    config: Any = model.config
    pad = int(config.pad_token_id if config.pad_token_id is not None else 0)
    ids = torch.randint(5, 40, (2, LONG))
    ids[1, SHORT:] = pad
    mask = (torch.arange(LONG) < torch.tensor([[LONG], [SHORT]])).long()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
    prepared = PreparedModel.from_module(model, ids, {"attention_mask": mask})
    batch = prepared.explain(ids, composite="attnlrp", extra={"attention_mask": mask}, target=1)
    torch.testing.assert_close(batch.logits, expected, rtol=1e-4, atol=1e-4)
    assert bool(torch.isfinite(batch.relevance).all())
    alone_ids = ids[1:, :SHORT]
    alone = prepared.explain(alone_ids, composite="attnlrp", extra={"attention_mask": torch.ones_like(alone_ids)},
                             target=1)
    torch.testing.assert_close(alone.logits[0], batch.logits[1], rtol=1e-4, atol=1e-5)
    scale = float(alone.relevance.abs().max())
    torch.testing.assert_close(batch.relevance[1, :SHORT], alone.relevance[0], rtol=0, atol=1e-4 * scale)
    assert float(batch.relevance[1, SHORT:].abs().max()) <= 1e-6 * scale


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_an_image_family_gives_its_logits_and_finite_relevance(family: str):
    torch.manual_seed(0)
    model = IMAGE_FAMILIES[family]().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).logits
    explained = PreparedModel.from_module(model, x).explain(x, composite="attnlrp")
    torch.testing.assert_close(explained.logits, expected, rtol=1e-4, atol=1e-4)
    assert explained.relevance.shape == x.shape
    assert bool(torch.isfinite(explained.relevance).all()) and float(explained.relevance.abs().max()) > 0
