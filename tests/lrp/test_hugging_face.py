"""Hugging Face transformers from tiny random configurations (the classes that load real checkpoints), captured from
the model objects and never patched, explained with `attnlrp` and compared with lxt 2.1's rules applied by
torch-function dispatch (tests/lrp/lxt_dispatch.py) in float64."""

from __future__ import annotations

import contextlib
from typing import Any
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from service.lrp import PreparedModel

T = pytest.importorskip("transformers")
pytest.importorskip("lxt.explicit.functional")
from transformers.activations import NewGELUActivation  # noqa: E402

from tests.lrp.lxt_dispatch import LxtRules  # noqa: E402  (needs lxt)
from tests.lrp.transformer_nets import EPS, assert_relevance_close, target_seed  # noqa: E402

F64 = torch.float64
torch.manual_seed(0)


def _frozen(model: nn.Module) -> nn.Module:
    """float64, eval mode, parameters constants (what they are to LRP; lxt's reference needs it)."""
    model = model.to(F64).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _compare_tokens(model: nn.Module, ids: torch.Tensor, extra: dict | None = None, last: bool = False,
                    lxt_patch: Any = contextlib.nullcontext) -> torch.Tensor:
    """Ours against lxt at the token ids (with `lxt_patch()` active while lxt runs); the logits at the last token
    for a language model."""
    def logits(**kwargs):
        out = model(input_ids=ids, **(extra or {}), **kwargs).logits
        return out[:, -1] if last else out

    expected = logits()
    seed = target_seed(expected)
    prepared = PreparedModel.from_module(model, ids, extra)
    ours = prepared.explain(ids, composite="attnlrp", output_relevance=seed, extra=extra, epsilon=EPS)
    torch.testing.assert_close(ours.logits, expected)
    with lxt_patch(), LxtRules(EPS, model.get_input_embeddings().weight) as rules:
        out = logits()
    out.backward(seed)
    assert len(rules.leaves) == 1, "one word-embedding lookup"
    assert_relevance_close(ours.relevance, rules.leaves[0].grad.sum(-1))
    return ours.relevance


def _bert(labels: int) -> Any:
    """A two-layer BERT configuration with `labels` classes."""
    return T.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=labels, max_position_embeddings=16)


def _padded_batch() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Two texts of 7 token ids, the second padded after its fifth, and their attention mask."""
    ids = torch.randint(1, 50, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    return ids, {"attention_mask": mask}


def test_bert_sequence_classification_with_padding():
    model = _frozen(T.BertForSequenceClassification(_bert(3)))
    relevance = _compare_tokens(model, *_padded_batch())
    assert torch.equal(relevance[1, 5:], torch.zeros(2, dtype=F64))


def test_vit_image_classification():
    config = T.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64, num_labels=5)
    model = _frozen(T.ViTForImageClassification(config))
    x = torch.randn(2, 3, 16, 16, dtype=F64)
    expected = model(pixel_values=x).logits
    seed = target_seed(expected)
    ours = PreparedModel.from_module(model, x).explain(x, composite="attnlrp", output_relevance=seed, epsilon=EPS)
    torch.testing.assert_close(ours.logits, expected)
    leaf = x.clone().requires_grad_()
    with LxtRules(EPS):
        out = model(pixel_values=leaf).logits
    out.backward(seed)
    assert_relevance_close(ours.relevance, leaf.grad)


def test_llama_causal_lm_at_the_last_token():
    config = T.LlamaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64, use_cache=False)
    _compare_tokens(_frozen(T.LlamaForCausalLM(config)), torch.randint(0, 50, (2, 7)), last=True)


def _gelu_as_one_function() -> Any:
    """lxt's own GPT-2 patch (lxt/efficient/models/gpt2.py, mlp_forward) applies the identity rule to the whole
    activation module; under the dispatch that is one F.gelu call, which LxtRules passes through unchanged."""
    return mock.patch.object(NewGELUActivation, "forward", lambda self, x: F.gelu(x, approximate="tanh"))


def test_gpt2_sequence_classification():
    config = T.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=16, use_cache=False,
                          num_labels=2, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    model = _frozen(T.GPT2ForSequenceClassification(config))
    assert isinstance(model.transformer.h[0].mlp.act, NewGELUActivation)  # GPT-2's gelu_new, written out
    _compare_tokens(model, torch.randint(1, 50, (2, 7)), lxt_patch=_gelu_as_one_function)


DECODER = {"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 64, "max_position_embeddings": 64,
           "use_cache": False, "num_labels": 3, "pad_token_id": 0}


@pytest.mark.parametrize("family", ["Qwen2", "Qwen3", "Gemma3Text", "Mistral"])
def test_decoders_lxt_covers_equal_it_on_a_padded_batch(family: str):
    """Qwen 2 and 3 (per-head RMSNorm of queries and keys), Gemma 3 (scaled embeddings, (1 + w) RMSNorm,
    tanh-GELU gates, sliding-window layers) and Mistral (a sliding window), classifying a batch whose second text
    is padded."""
    window = {"sliding_window": 4} if family in ("Gemma3Text", "Mistral") else {}  # shorter than the texts
    config = getattr(T, f"{family}Config")(**DECODER, **window)
    model = _frozen(getattr(T, f"{family}ForSequenceClassification")(config))
    ids = torch.randint(1, 50, (2, 7))
    ids[1, 5:] = 0
    mask = (ids != 0).long()
    relevance = _compare_tokens(model, ids, {"attention_mask": mask})
    assert torch.equal(relevance[1, 5:], torch.zeros(2, dtype=F64))


def test_token_classification_explains_one_token_s_label_over_all_tokens():
    """Every position's logits are outputs (per_position): output p * classes + c is token p's class c."""
    model = _frozen(T.BertForTokenClassification(_bert(5)))
    ids, extra = _padded_batch()
    expected = model(input_ids=ids, **extra).logits  # [2, 7, 5]
    prepared = PreparedModel.from_module(model, ids, extra, per_position=True)
    chosen = [(3, 1), (4, 2)]  # (token, class) per sample
    ours = prepared.explain(ids, target=[p * 5 + c for p, c in chosen], composite="attnlrp", extra=extra,
                            epsilon=EPS)
    torch.testing.assert_close(ours.logits, expected.flatten(1))
    seed = torch.zeros_like(expected)
    for row, (position, label) in enumerate(chosen):
        seed[row, position, label] = expected[row, position, label]
    with LxtRules(EPS, model.get_input_embeddings().weight) as rules:
        out = model(input_ids=ids, **extra).logits
    out.backward(seed)
    assert_relevance_close(ours.relevance, rules.leaves[0].grad.sum(-1))
    assert torch.equal(ours.relevance[1, 5:], torch.zeros(2, dtype=F64))
