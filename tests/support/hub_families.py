"""Tiny random configurations of every common Hugging Face classification family (issue 25's list), as the classes
that load real checkpoints: text (sequence classification) and image (image classification) model factories."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from torch import nn

T = pytest.importorskip("transformers")

TEXT = {"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 37, "num_labels": 3}
DECODER = {**TEXT, "num_key_value_heads": 2, "head_dim": 8, "pad_token_id": 0, "use_cache": False}
VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
       "intermediate_size": 37, "num_labels": 3}
STAGES = {"num_labels": 3, "hidden_sizes": [8, 16], "depths": [1, 1]}
EOS = 3  # T5's end-of-sequence id: the [SEP] of the tests' WordPiece tokenizers, which end every text with it
TEXT_FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "BERT": lambda: T.BertForSequenceClassification(T.BertConfig(**TEXT)),
    "RoBERTa": lambda: T.RobertaForSequenceClassification(T.RobertaConfig(
        **TEXT, pad_token_id=1, max_position_embeddings=514)),  # positions start after the pad id, as checkpoints
    "DistilBERT": lambda: T.DistilBertForSequenceClassification(T.DistilBertConfig(
        vocab_size=50, dim=32, n_layers=2, n_heads=4, hidden_dim=37, num_labels=3)),
    "ALBERT": lambda: T.AlbertForSequenceClassification(T.AlbertConfig(**TEXT, embedding_size=16)),
    "ELECTRA": lambda: T.ElectraForSequenceClassification(T.ElectraConfig(**TEXT, embedding_size=16)),
    "XLM-RoBERTa": lambda: T.XLMRobertaForSequenceClassification(T.XLMRobertaConfig(
        **TEXT, pad_token_id=1, max_position_embeddings=514)),
    "DeBERTa-v2 (zeros_like, sign)": lambda: T.DebertaV2ForSequenceClassification(T.DebertaV2Config(**TEXT)),
    "MPNet (min on constants whose size follows the tokens)": lambda: T.MPNetForSequenceClassification(
        T.MPNetConfig(**TEXT, max_position_embeddings=514)),
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
    "T5 (decoder ids shifted in place, the <eos> rows selected by a mask)": lambda: T.T5ForSequenceClassification(
        T.T5Config(vocab_size=50, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4,
                   num_labels=3, relative_attention_num_buckets=8, pad_token_id=0, decoder_start_token_id=0,
                   eos_token_id=EOS, use_cache=False)),
}
# MobileNetV2's and EfficientNet's default initialisation (std 0.02) gives logits near 1e-26 at these sizes, whose
# relevance underflows float32: their weights are drawn wider.
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
