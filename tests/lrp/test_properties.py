"""Properties 2-7 of docs/rules.md on MLPs, CNNs, a residual net with BatchNorm, a concat net and a reused module."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from service.lrp import COMPOSITE_NAMES, PreparedModel, explain
from tests.lrp.nets import NETS, batch, weighted_layers

BOX: dict[str, Any] = {"low": -4.0, "high": 4.0}  # every test input lies in this box


def _params(composite: str) -> dict[str, Any]:
    return BOX if composite == "epsilon_gamma_box" else {}


def _input_times_gradient(model, x, targets):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
    return x.detach() * grad


@pytest.mark.parametrize("net", list(NETS))
def test_lrp0_equals_input_times_gradient(net):
    """Property 2 (and 7 for `twice`): LRP-0 everywhere on a ReLU net is input x gradient of the target logit."""
    build, shape = NETS[net]
    model = build()
    x = batch(shape, n=5)
    result = explain(model, x, composite="epsilon", epsilon=0.0, stabilizer=0.0)
    expected = _input_times_gradient(model, x, result.targets)
    torch.testing.assert_close(result.relevance, expected, rtol=1e-9, atol=1e-12)


# flat and wsquare ignore activations, so on hidden layers they hand relevance to dead ReLUs, which a following
# norm layer (average pool, z = 0) cannot pass on; they conserve as the first layer, which is what is tested.
CONSERVING = ["epsilon", "epsilon_plus", "epsilon_plus_flat", "zplus", "gamma", "wsquare-first"]
# zplus on a conv that feeds a sum (not a ReLU), as in the residual net, can meet a neuron with relevance but no
# positive contribution, which no zplus variant can conserve: there only the rules without the x+ split are held to it.
CONSERVING_CASES = [(net, composite) for net in NETS for composite in CONSERVING
                    if net != "residual" or composite in ("epsilon", "gamma")]


@pytest.mark.parametrize(("net", "composite"), CONSERVING_CASES)
def test_conservation_on_bias_free_nets(net, composite):
    """Property 3: without biases and with eps -> 0 the input relevance sums to the target logit."""
    build, shape = NETS[net]
    model = build(bias=False)
    x = batch(shape, n=4)
    if composite == "wsquare-first":
        first = weighted_layers(PreparedModel.from_module(model, x))[0].name
        composite = {"base": "epsilon_plus", "layers": {first: "wsquare"}}
    result = explain(model, x, composite=composite, epsilon=1e-12, stabilizer=1e-12)
    logit = model(x).detach().gather(1, result.targets[:, None])[:, 0]
    torch.testing.assert_close(result.relevance.flatten(1).sum(1), logit, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("net", ["mlp", "cnn_bn", "residual"])
def test_conservation_delta_is_reported_not_assumed(net):
    """Property 3: the reported delta is logit - sum(R), and it is not zero on nets with biases."""
    build, shape = NETS[net]
    model = build(bias=True)
    x = batch(shape, n=4)
    result = explain(model, x, composite="epsilon_plus")
    logit = model(x).detach().gather(1, result.targets[:, None])[:, 0]
    expected = logit - result.relevance.flatten(1).sum(1)
    torch.testing.assert_close(result.conservation_delta, expected, rtol=1e-12, atol=1e-12)
    assert expected.abs().max() > 1e-6


@pytest.mark.parametrize("net", list(NETS))
def test_zplus_and_zbox_relevance_nonnegative_for_positive_seed(net):
    """Property 4: zplus (and zbox on the first layer with x inside [low, high]) keep the seed's sign."""
    build, shape = NETS[net]
    x = batch(shape, n=4).clamp(-4, 4)
    model = PreparedModel.from_module(build(), x)
    first = weighted_layers(model)[0].name
    seed = torch.rand(4, model.predict(x).shape[1], dtype=torch.float64)
    composites: list[Any] = ["zplus", {"base": "zplus", "layers": {first: "zbox"}}]
    for composite in composites:
        relevance = model.explain(x, composite=composite, output_relevance=seed, **BOX).relevance
        assert relevance.min() >= 0
        assert relevance.max() > 0


@pytest.mark.parametrize("composite", COMPOSITE_NAMES)
@pytest.mark.parametrize("net", ["cnn", "residual", "concat"])
def test_relevance_is_linear_in_the_seed(net, composite):
    """Property 4: R(a*s1 + b*s2) = a*R(s1) + b*R(s2)."""
    build, shape = NETS[net]
    x = batch(shape, n=3)
    model = PreparedModel.from_module(build(), x)
    classes = model.predict(x).shape[1]
    gen = torch.Generator().manual_seed(1)
    s1, s2 = (torch.randn(3, classes, generator=gen, dtype=torch.float64) for _ in range(2))

    def relevance(seed):
        return model.explain(x, composite=composite, output_relevance=seed, **_params(composite)).relevance

    torch.testing.assert_close(relevance(2.0 * s1 - 0.5 * s2), 2.0 * relevance(s1) - 0.5 * relevance(s2),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("composite", COMPOSITE_NAMES)
@pytest.mark.parametrize("net", list(NETS))
def test_batched_equals_each_sample_alone(net, composite, dtype, tolerance):
    """Property 5: explaining a batch equals explaining each sample alone, with per-sample targets."""
    build, shape = NETS[net]
    model = build().to(dtype)
    x = batch(shape, n=5).to(dtype)  # the float64 samples, rounded
    targets = [i % 3 for i in range(5)]
    together = explain(model, x, targets, composite, **_params(composite)).relevance
    for i in range(5):
        alone = explain(model, x[i:i + 1], targets[i], composite, **_params(composite)).relevance
        error = (together[i:i + 1] - alone).norm() / alone.norm().clamp(min=1e-30)
        assert error <= tolerance, f"sample {i}: relative error {float(error):.2e}"


@pytest.mark.parametrize("composite", COMPOSITE_NAMES)
@pytest.mark.parametrize("net", list(NETS))
def test_finite_on_zero_input_and_dead_relus(net, composite):
    """Property 5: all-zero inputs and all-dead ReLUs give finite relevance, even with eps = 0."""
    build, shape = NETS[net]
    model = build()
    zeros = torch.zeros(2, *shape, dtype=torch.float64)
    for eps in (0.0, 1e-6):
        relevance = explain(model, zeros, composite=composite, epsilon=eps, **_params(composite)).relevance
        assert torch.isfinite(relevance).all()
    with torch.no_grad():  # make every ReLU dead
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.fill_(-100.0)
    relevance = explain(model, batch(shape, n=2), composite=composite, **_params(composite)).relevance
    assert torch.isfinite(relevance).all()


@pytest.mark.parametrize("net", list(NETS))
def test_no_side_effects(net):
    """Property 6: state_dict bitwise unchanged, no hooks left, outputs and flags unchanged after explain."""
    build, shape = NETS[net]
    model = build()
    x = batch(shape, n=3)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    before_out = model(x).detach().clone()
    grad_flags = [p.requires_grad for p in model.parameters()]
    for composite in COMPOSITE_NAMES:
        explain(model, x, composite=composite, **_params(composite))
    after_state = model.state_dict()
    assert before_state.keys() == after_state.keys()
    for key, value in before_state.items():
        assert torch.equal(value, after_state[key]) and value.dtype == after_state[key].dtype, key
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks and not module._backward_pre_hooks
    assert torch.equal(model(x), before_out)
    assert [p.requires_grad for p in model.parameters()] == grad_flags
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


class _Unrolled(torch.nn.Module):
    """`Twice` with its shared layer replaced by two separate copies."""

    def __init__(self, twice: torch.nn.Module) -> None:
        super().__init__()
        self.inp, self.head = twice.inp, twice.head
        self.first = copy.deepcopy(twice.shared)
        self.second = copy.deepcopy(twice.shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        return self.head(torch.relu(self.second(torch.relu(self.first(h)))))


@pytest.mark.parametrize("composite", COMPOSITE_NAMES)
def test_module_called_twice_is_attributed_per_call(composite):
    """Property 7: a module called twice gives the relevance of the same net with two separate copies."""
    build, shape = NETS["twice"]
    model = build()
    x = batch(shape, n=4)
    shared = explain(model, x, composite=composite, **_params(composite)).relevance
    unrolled = explain(_Unrolled(model), x, composite=composite, **_params(composite)).relevance
    torch.testing.assert_close(shared, unrolled, rtol=1e-12, atol=1e-14)
    lrp0 = explain(model, x, composite="epsilon", epsilon=0.0, stabilizer=0.0)
    torch.testing.assert_close(lrp0.relevance, _input_times_gradient(model, x, lrp0.targets), rtol=1e-9, atol=1e-12)
