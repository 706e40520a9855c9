"""BatchNorm folding is exact, private, and leaves unfoldable BatchNorms to the pass rule."""

from __future__ import annotations

import torch
from torch import nn

from service.lrp import PreparedModel
from tests.lrp.nets import batch, cnn, randomize_batchnorm, residual, weighted_layers


def test_folding_preserves_the_function_exactly():
    model = cnn(batchnorm=True)
    prepared = PreparedModel.from_module(model, batch((2, 10, 10)))
    assert "batchnorm" not in [node.op for node in prepared.graph.nodes]
    assert prepared.graph.folded == {"1": "0"}  # module paths
    x = batch((2, 10, 10), n=6)
    torch.testing.assert_close(prepared.predict(x), model(x), rtol=1e-13, atol=1e-13)


def test_folded_weights_match_the_formula():
    model = randomize_batchnorm(nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))).double().eval()
    conv, bn = model[0], model[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    node = weighted_layers(PreparedModel.from_module(model, batch((2, 5, 5))))[0]
    torch.testing.assert_close(node.params["weight"], conv.weight * scale.view(-1, 1, 1, 1), rtol=0, atol=1e-15)
    torch.testing.assert_close(node.params["bias"], (conv.bias - bn.running_mean) * scale + bn.bias,
                               rtol=0, atol=1e-15)


def test_residual_batchnorms_fold_without_a_canonizer():
    prepared = PreparedModel.from_module(residual(), batch((1, 8, 8)))
    assert prepared.graph.folded == {"stem_bn": "stem", "bn1": "conv1", "bn2": "conv2"}


def test_batchnorm_without_a_preceding_layer_stays_and_passes_relevance():
    model = randomize_batchnorm(nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2))).double().eval()
    x = batch((4,), n=3)
    prepared = PreparedModel.from_module(model, x)
    assert [node.op for node in prepared.graph.nodes] == ["input", "batchnorm", "linear"]
    torch.testing.assert_close(prepared.predict(x), model(x))
    rules = {row["name"]: row["rule"] for row in prepared.layer_rules("epsilon")}
    assert rules["0"] == "pass"
    # pass rule: the input relevance is the epsilon relevance of the Linear at the BatchNorm's output
    result = prepared.explain(x, composite="epsilon", epsilon=0.0)
    normalized = model[0](x)
    w = model[1].weight
    logits = model(x)
    t = result.targets
    expected = normalized * w[t] / logits.gather(1, t[:, None]) * logits.gather(1, t[:, None])
    torch.testing.assert_close(result.relevance, expected.detach())


def test_folding_uses_private_copies():
    model = cnn(batchnorm=True)
    before = model[0].weight.clone()
    prepared = PreparedModel.from_module(model, batch((2, 10, 10)))
    assert weighted_layers(prepared)[0].params["weight"].data_ptr() != model[0].weight.data_ptr()
    assert torch.equal(model[0].weight, before)  # type: ignore[arg-type]
