"""Every common Hugging Face classification family (issue 25's list), from tiny random configurations, captured from
the model objects and never patched: each gives the model's own logits on a batch and finite `attnlrp` relevance, and
a text's relevance in a padded batch equals its relevance alone (padding positions get none). The families that
stopped on mundane ops are named for them: `type_as` (Gemma), `where`/`min` on constants whose size follows the input
(Gemma 2, MPNet), `zeros_like`/`sign` (DeBERTa-v2), a relative position index filled through views (BEiT), in-place
dropout (MobileNetV2). Image families through their processors: tests/store/test_hub_families.py; parity with lxt:
tests/lrp/test_hugging_face.py."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from service.lrp import PreparedModel

pytest.importorskip("transformers")
from tests.support.hub_families import EOS, IMAGE_FAMILIES, TEXT_FAMILIES

LONG, SHORT = 9, 6  # the tokens of the two texts of a batch; the shorter one is padded on the right


@pytest.mark.parametrize("family", TEXT_FAMILIES)
def test_a_text_family_gives_its_logits_and_a_padded_text_the_relevance_it_gets_alone(family: str):
    torch.manual_seed(0)
    model = TEXT_FAMILIES[family]().eval()
    config: Any = model.config
    pad = int(config.pad_token_id if config.pad_token_id is not None else 0)
    ids = torch.randint(5, 40, (2, LONG))
    ids[0, LONG - 1] = ids[1, SHORT - 1] = EOS  # each text ends as its tokenizer ends it (T5 reads its <eos>)
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
