"""Whole transformers under `attnlrp` against lxt 2.1 (the AttnLRP authors' rules), in float64 with a tiny epsilon:
hand-written BERT-, ViT- and Llama-like models (tests/lrp/transformer_nets.py), PyTorch's own attention modules, and
Hugging Face BERT, ViT and Llama from tiny random configurations, captured from the model objects, never patched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from service.lrp import ExplanationInputError, PreparedModel
from tests.lrp.transformer_nets import (
    EPS,
    BertLike,
    LlamaLike,
    LxtOps,
    TorchOps,
    ViTLike,
    assert_relevance_close,
    encoder_layer,
    multihead_attention,
    target_seed,
)

pytest.importorskip("lxt.explicit.functional")
torch.manual_seed(0)
F64 = torch.float64


def _ours(model: nn.Module, x: torch.Tensor, seed: torch.Tensor, extra: dict | None = None) -> torch.Tensor:
    prepared = PreparedModel.from_module(model, x, extra)
    return prepared.explain(x, composite="attnlrp", output_relevance=seed, extra=extra, epsilon=EPS).relevance


def _reference_tokens(model, ids: torch.Tensor, seed: torch.Tensor, **kwargs) -> torch.Tensor:
    """lxt's relevance of each token: the gradient at the word embedding's output through lxt's rules, summed over
    the hidden dimension."""
    model.use(LxtOps)
    try:
        embedded = model.embed(ids).detach().requires_grad_()
        out = model.body(embedded, **kwargs)
        (out[:, -1] if out.dim() == 3 else out).backward(seed)
    finally:
        model.use(TorchOps)
    return embedded.grad.sum(-1)


def _padded_ids() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, 30, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    return ids, mask


def test_bert_like_with_an_attention_mask_equals_lxt_and_padding_gets_zero():
    model = BertLike().to(F64).eval()
    ids, mask = _padded_ids()
    seed = target_seed(model(ids, mask))
    ours = _ours(model, ids, seed, {"attention_mask": mask})
    assert_relevance_close(ours, _reference_tokens(model, ids, seed, attention_mask=mask))
    assert torch.equal(ours[mask == 0], torch.zeros(int((mask == 0).sum()), dtype=F64))
    assert (ours[mask == 1] != 0).all()


def test_vit_like_equals_lxt():
    model = ViTLike().to(F64).eval()
    x = torch.randn(2, 3, 8, 8, dtype=F64)
    seed = target_seed(model(x))
    model.use(LxtOps)
    leaf = x.clone().requires_grad_()
    model(leaf).backward(seed)
    model.use(TorchOps)
    assert_relevance_close(_ours(model, x, seed), leaf.grad)


@pytest.mark.parametrize("sdpa", [False, True], ids=["masked_fill", "sdpa_is_causal"])
def test_llama_like_decoder_at_the_last_token_equals_lxt(sdpa):
    model = LlamaLike(sdpa=sdpa).to(F64).eval()
    ids = torch.randint(0, 30, (2, 7))
    seed = target_seed(model(ids)[:, -1])
    assert_relevance_close(_ours(model, ids, seed), _reference_tokens(model, ids, seed))


def test_a_longer_input_than_the_model_was_captured_with_gives_the_same_relevance_as_a_fresh_capture():
    model = LlamaLike().to(F64).eval()
    prepared = PreparedModel.from_module(model, torch.randint(0, 30, (2, 4)))
    ids = torch.randint(0, 30, (3, 9))
    seed = target_seed(model(ids)[:, -1])
    ours = prepared.explain(ids, composite="attnlrp", output_relevance=seed, epsilon=EPS).relevance
    assert_relevance_close(ours, _reference_tokens(model, ids, seed))


class _Attend(nn.Module):
    """nn.MultiheadAttention over a [batch, tokens, width] input, either layout, read at the first token."""

    def __init__(self, batch_first: bool, need_weights: bool) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(16, 4, batch_first=batch_first)
        self.head = nn.Linear(16, 3)
        self.batch_first, self.need_weights = batch_first, need_weights

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        y = x if self.batch_first else x.transpose(0, 1)
        out, _ = self.attention(y, y, y, key_padding_mask=key_padding_mask, need_weights=self.need_weights)
        return self.head((out if self.batch_first else out.transpose(0, 1))[:, 0])


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("masked", [True, False])
def test_multihead_attention_equals_lxt(batch_first, need_weights, masked):
    model = _Attend(batch_first, need_weights).to(F64).eval()
    x = torch.randn(3, 5, 16, dtype=F64)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[1, 3:] = True
    extra = {"key_padding_mask": padding} if masked else None
    seed = target_seed(model(x, padding if masked else None))
    torch.testing.assert_close(TorchOps.linear(multihead_attention(TorchOps, model.attention, x,
                                                                   padding if masked else None)[:, 0], model.head),
                               model(x, padding if masked else None))
    leaf = x.clone().requires_grad_()
    LxtOps.linear(multihead_attention(LxtOps, model.attention, leaf, padding if masked else None)[:, 0],
                  model.head).backward(seed)
    ours = _ours(model, x, seed, extra)
    assert_relevance_close(ours, leaf.grad)
    if masked:
        assert torch.equal(ours[1, 3:], torch.zeros(2, 16, dtype=F64))


class _Encode(nn.Module):
    def __init__(self, norm_first: bool, activation: str) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation, batch_first=True,
                                                norm_first=norm_first)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.layer(x, src_key_padding_mask=src_key_padding_mask)[:, 0])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_layer_equals_lxt(norm_first, activation):
    model = _Encode(norm_first, activation).to(F64).eval()
    x = torch.randn(3, 5, 16, dtype=F64)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[2, 2:] = True
    seed = target_seed(model(x, padding))
    torch.testing.assert_close(TorchOps.linear(encoder_layer(TorchOps, model.layer, x, padding)[:, 0], model.head),
                               model(x, padding))
    leaf = x.clone().requires_grad_()
    LxtOps.linear(encoder_layer(LxtOps, model.layer, leaf, padding)[:, 0], model.head).backward(seed)
    assert_relevance_close(_ours(model, x, seed, {"src_key_padding_mask": padding}), leaf.grad)


def test_a_padded_batch_gives_each_sample_the_relevance_it_gets_alone():
    model = BertLike().to(F64).eval()
    ids, mask = _padded_ids()
    prepared = PreparedModel.from_module(model, ids, {"attention_mask": mask})
    together = prepared.explain(ids, target=2, composite="attnlrp", extra={"attention_mask": mask})
    for i, length in enumerate(mask.sum(1).tolist()):
        alone_ids, alone_mask = ids[i:i + 1, :length], mask[i:i + 1, :length]
        alone = prepared.explain(alone_ids, target=2, composite="attnlrp", extra={"attention_mask": alone_mask})
        torch.testing.assert_close(together.relevance[i, :length], alone.relevance[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(together.logits[i], alone.logits[0], rtol=1e-9, atol=1e-12)


def test_explaining_leaves_the_model_untouched():
    model = LlamaLike().eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    ids = torch.randint(0, 30, (2, 6))
    before = model(ids)
    PreparedModel.from_module(model, ids).explain(ids, composite="attnlrp")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert {name: p.requires_grad for name, p in model.named_parameters()} == grads
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())
    assert not model.training
    torch.testing.assert_close(model(ids), before, rtol=0, atol=0)


@pytest.mark.parametrize("net", [LlamaLike, BertLike])
def test_float32_agrees_with_float64(net):
    model = net().eval()
    ids, mask = _padded_ids()
    extra = {"attention_mask": mask} if net is BertLike else None
    single = PreparedModel.from_module(model, ids, extra).explain(ids, composite="attnlrp", extra=extra)
    converted = PreparedModel.from_module(model, ids, extra).to(dtype=F64)
    exact = PreparedModel.from_module(model.to(F64), ids, extra).explain(ids, composite="attnlrp", extra=extra)
    assert single.relevance.dtype == torch.float32 and exact.relevance.dtype == F64
    assert_relevance_close(single.relevance.double(), exact.relevance, rtol=1e-4)
    if net is LlamaLike:  # its forward writes no dtype-dependent constant, so a converted copy computes the same
        assert_relevance_close(converted.explain(ids, composite="attnlrp").relevance, exact.relevance, rtol=1e-9)


def test_two_threads_explaining_one_prepared_model_get_the_lone_answers():
    from concurrent.futures import ThreadPoolExecutor

    model = LlamaLike().to(F64).eval()
    prepared = PreparedModel.from_module(model, torch.randint(0, 30, (2, 5)))
    batches = [torch.randint(0, 30, (2, n)) for n in (3, 5, 7, 9)] * 3
    alone = [prepared.explain(ids, composite="attnlrp").relevance for ids in batches]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda ids: prepared.explain(ids, composite="attnlrp").relevance, batches))
    for a, b in zip(alone, together, strict=True):  # intra-op threads may sum in another order: ulps, not a race
        assert_relevance_close(b, a, rtol=1e-12)


def test_relevance_is_finite_on_zero_inputs():
    vit = ViTLike().eval()
    assert torch.isfinite(PreparedModel.from_module(vit, torch.zeros(2, 3, 8, 8)).explain(
        torch.zeros(2, 3, 8, 8), composite="attnlrp").relevance).all()
    bert = BertLike().eval()
    with torch.no_grad():
        bert.word.weight.zero_()
    ids, mask = _padded_ids()
    relevance = PreparedModel.from_module(bert, ids, {"attention_mask": mask}).explain(
        ids, composite="attnlrp", extra={"attention_mask": mask}).relevance
    assert torch.isfinite(relevance).all()


def test_extra_inputs_are_checked_by_name_and_shape():
    model = BertLike().eval()
    ids, mask = _padded_ids()
    prepared = PreparedModel.from_module(model, ids, {"attention_mask": mask})
    with pytest.raises(ExplanationInputError, match=r"prepared with the extra input\(s\) \['attention_mask'\]"):
        prepared.explain(ids, composite="attnlrp")
    with pytest.raises(ExplanationInputError, match=r"'attention_mask' must have shape \(3, 7\), got \(3, 6\)"):
        prepared.explain(ids, composite="attnlrp", extra={"attention_mask": mask[:, :6]})
    with pytest.raises(ExplanationInputError, match=r"\['mask'\] are not arguments of BertLike.forward"):
        PreparedModel.from_module(model, ids, {"mask": mask})


def test_more_tokens_than_the_position_table_holds_is_refused_saying_the_limit():
    model = BertLike(positions=12).eval()
    prepared = PreparedModel.from_module(model, torch.randint(0, 30, (2, 5)))
    assert prepared.explain(torch.randint(0, 30, (1, 12)), composite="attnlrp").relevance.shape == (1, 12)
    with pytest.raises(ExplanationInputError, match="x has 13 tokens; the model takes at most 12"):
        prepared.explain(torch.randint(0, 30, (1, 13)), composite="attnlrp")
