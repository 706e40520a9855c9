"""Hugging Face families that stopped on mundane ops (issue 25's table), from tiny random configurations, captured
from the model objects and never patched: each gives the model's own logits on a batch (a padded row for the text
models, with and without a left-padded row: Gemma's padded row was NaN until a fully masked query row got weights 0,
as torch's attention gives it) and finite `attnlrp` relevance. (Parity with lxt per family is further work.)"""

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
FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "Gemma (type_as in RMSNorm)": lambda: T.GemmaForSequenceClassification(T.GemmaConfig(**DECODER)),
    "Gemma 2 (softmax in float32, where/min on constants)": lambda: T.Gemma2ForSequenceClassification(
        T.Gemma2Config(**DECODER)),
    "MPNet (min on constants whose size follows the tokens)": lambda: T.MPNetForSequenceClassification(
        T.MPNetConfig(**TEXT)),
    "ModernBERT (local and global attention)": lambda: T.ModernBertForSequenceClassification(
        T.ModernBertConfig(**TEXT, pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3,
                           global_attn_every_n_layers=1, local_attention=8)),
    "DeBERTa-v2 (zeros_like, sign)": lambda: T.DebertaV2ForSequenceClassification(T.DebertaV2Config(**TEXT)),
    "BEiT (a relative position index filled through views)": lambda: T.BeitForImageClassification(T.BeitConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, num_labels=3, use_relative_position_bias=True)),
    "MobileNetV2 (in-place dropout)": lambda: T.MobileNetV2ForImageClassification(T.MobileNetV2Config(
        image_size=32, num_labels=3, depth_multiplier=0.35)),
}


CASES = [(family, padded) for family in FAMILIES for padded in (False, True)
         if not padded or family.split()[0] not in ("BEiT", "MobileNetV2")]


@pytest.mark.parametrize(("family", "padded"), CASES)
def test_the_family_captures_gives_its_logits_and_finite_relevance(family, padded):
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    extra: dict[str, Any] | None
    if isinstance(model.config, T.BeitConfig | T.MobileNetV2Config):
        x, extra = torch.randn(2, 3, 32, 32), None
        with torch.no_grad():
            expected = model(x).logits
    else:
        x = torch.randint(5, 40, (2, 7))
        mask = torch.ones_like(x)
        if padded:
            mask[1, :2] = 0
        extra = {"attention_mask": mask}
        with torch.no_grad():
            expected = model(input_ids=x, attention_mask=mask).logits
    prepared = PreparedModel.from_module(model, x, extra)
    explained = prepared.explain(x, composite="attnlrp", extra=extra)
    torch.testing.assert_close(explained.logits, expected, rtol=1e-4, atol=1e-4)
    assert explained.relevance.shape[:2] == x.shape[:2]
    assert bool(torch.isfinite(explained.relevance).all())
