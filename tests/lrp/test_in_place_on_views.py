"""A forward that builds a tensor carrying relevance by writing into views of a fresh one (T5's decoder ids: the
input's ids shifted right by slice assignment, the first filled in, masked_fill_ in place) is captured as torch
functionalizes it, and the relevance follows the ids through the shift: on a model linear in its embeddings, each
token's relevance is exactly w . E1[x_t] + w . E2[x_t] (its own embedding, and the shifted embedding at position
t + 1), the last token's w . E1[x_t] alone. And a boolean mask over the batch that selects a different number of rows
per sample (T5's <eos> rows) is refused by the engine rather than mixing samples."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from service.lrp import PreparedModel, UnevenSelectionError

VOCAB, WIDTH = 12, 5


class Shifted(nn.Module):
    """out = w . (sum_t E1[x_t] + sum_t E2[shift(x)_t]), shift as transformers' _shift_right writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.own = nn.Embedding(VOCAB, WIDTH)
        self.shifted = nn.Embedding(VOCAB, WIDTH)
        self.out = nn.Linear(WIDTH, 1, bias=False)
        with torch.no_grad():
            self.shifted.weight[0] = 0.0  # the start id carries nothing, so the total is conserved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        decoder = x.new_zeros(x.shape)
        decoder[..., 1:] = x[..., :-1].clone()
        decoder[..., 0] = 0
        decoder.masked_fill_(decoder == -100, 0)
        summed = self.own(x).sum(dim=1) + self.shifted(decoder).sum(dim=1)
        logits: torch.Tensor = self.out(summed)
        return logits


def test_relevance_follows_token_ids_through_a_shift_written_in_place():
    torch.manual_seed(0)
    model = Shifted().double().eval()  # float64: the identity holds to rounding
    x = torch.randint(1, VOCAB, (3, 6))
    explained = PreparedModel.from_module(model, x).explain(x, target=0, composite="epsilon", epsilon=1e-15,
                                                           stabilizer=1e-15)
    w = model.out.weight[0].detach()
    own = model.own.weight.detach()[x] @ w
    shifted = model.shifted.weight.detach()[x] @ w
    expected = own.clone()
    expected[:, :-1] += shifted[:, :-1]
    torch.testing.assert_close(explained.relevance, expected, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(explained.relevance.sum(dim=1), explained.target_logits, rtol=1e-9, atol=1e-10)


class LastMarked(nn.Module):
    """The embedding at each text's last marked token (id 1), selected as T5 selects its <eos> rows."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.out = nn.Linear(WIDTH, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(x)
        rows = hidden[x.eq(1), :].view(hidden.shape[0], -1, hidden.shape[-1])[:, -1, :]
        logits: torch.Tensor = self.out(rows)
        return logits


def test_a_mask_over_the_batch_that_selects_unevenly_is_refused_and_each_sample_alone_is_right():
    torch.manual_seed(0)
    model = LastMarked().eval()
    x = torch.randint(2, VOCAB, (2, 5))
    x[0, 4] = x[1, 3] = 1
    prepared = PreparedModel.from_module(model, x)
    with torch.no_grad():
        torch.testing.assert_close(prepared.output(x), model(x))
    uneven = x.clone()
    uneven[0, 1] = 1  # two marked tokens in the first text, one in the second
    with pytest.raises(UnevenSelectionError, match=r"selects \[2, 1\] elements"):
        prepared.output(uneven)
    with torch.no_grad():
        for row in uneven:
            torch.testing.assert_close(prepared.output(row[None]), model(row[None]))
    with pytest.raises(UnevenSelectionError, match="at least one"):
        prepared.output(torch.full((1, 4), 3))
