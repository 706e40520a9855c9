"""The explain entry point: targets, parameters, intermediate layers, devices, caching and threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from service.lrp import (
    ExplanationInputError,
    ModelPreparationError,
    PreparedModel,
    UnsupportedLayerError,
    explain,
    prepare,
)
from tests.lrp.nets import batch, cnn, mlp, residual


def test_targets_none_int_and_per_sample():
    model = mlp()
    x = batch((6,), n=3)
    logits = model(x).detach()
    assert torch.equal(explain(model, x).targets, logits.argmax(1))
    assert explain(model, x, target=2).targets.tolist() == [2, 2, 2]
    assert explain(model, x, target=[0, 3, 1]).targets.tolist() == [0, 3, 1]
    assert explain(model, x, target=torch.tensor([1, 1, 0])).targets.tolist() == [1, 1, 0]


def test_per_sample_targets_seed_the_right_logit():
    model = mlp(bias=False)
    x = batch((6,), n=3)
    result = explain(model, x, target=[0, 3, 1], composite="epsilon", epsilon=0.0)
    logits = model(x).detach()
    torch.testing.assert_close(result.relevance.sum(1), logits[torch.arange(3), torch.tensor([0, 3, 1])])


def test_several_classes_explained_together_seed_their_logits_sum_and_get_the_sum_of_their_relevance():
    model = mlp(bias=False)
    x = batch((6,), n=3)
    together = explain(model, x, target=[[0, 2], 3, [1, 3, 0]], composite="epsilon", epsilon=0.0)
    logits = model(x).detach()
    expected_sums = torch.stack([logits[0, [0, 2]].sum(), logits[1, 3], logits[2, [1, 3, 0]].sum()])
    torch.testing.assert_close(together.relevance.sum(1), expected_sums)  # conservation: ReLU, no bias, epsilon 0
    torch.testing.assert_close(together.target_logits, expected_sums)
    singles = {c: explain(model, x, target=c, composite="epsilon_plus_flat").relevance for c in range(4)}
    mixed = explain(model, x, target=[[0, 2], 3, [1, 3, 0]], composite="epsilon_plus_flat").relevance
    torch.testing.assert_close(mixed[0], singles[0][0] + singles[2][0])  # LRP is linear in its seed
    torch.testing.assert_close(mixed[2], singles[1][2] + singles[3][2] + singles[0][2])
    assert together.targets.tolist() == [0, 3, 0]  # each sample's first selected class, in index order


@pytest.mark.parametrize(("target", "message"), [([[0, 0], 1, 2], "lists a class twice"),
                                                 ([[], 1, 2], "a non-empty list of ints"),
                                                 ([[0, 9], 1, 2], "target 9 is out of range")])
def test_bad_selections_of_several_classes_are_refused_saying_why(target, message):
    with pytest.raises(ExplanationInputError, match=message):
        explain(mlp(), batch((6,), n=3), target=target)


def test_none_inside_per_sample_targets_means_that_sample_s_argmax():
    model = mlp()
    x = batch((6,), n=3)
    argmax = model(x).argmax(1).tolist()
    assert explain(model, x, target=[2, None, 0]).targets.tolist() == [2, argmax[1], 0]


@pytest.mark.parametrize("target,message", [
    (4, "target 4 is out of range; the model has 4 classes"),
    (-1, "out of range"),
    ([0, 1], r"one int \(or None for the argmax\) per sample"),
    ([0, 1, 1.5], r"one int \(or None for the argmax\) per sample"),
    (True, "not a bool"),
])
def test_bad_targets_are_explained(target, message):
    with pytest.raises(ExplanationInputError, match=message):
        explain(mlp(), batch((6,), n=3), target=target)


@pytest.mark.parametrize("params,message", [
    ({"epsilon": -1.0}, "must be a number from 0 to 3.402823e[+]38"),
    ({"gamma": float("nan")}, "must be a number from 0 to 3.402823e[+]38"),
    ({"epsilon": 3.5e38}, r"parameter 'epsilon' must be a number from 0 to 3.402823e\+38 \(float32's largest\)"),
    ({"gamma": 10**400}, "parameter 'gamma' must be a number from 0 to"),
    ({"alpha": 3.0}, "alpha - beta must equal 1"),
    ({"gama": 0.1}, "unknown LRP parameter"),
    ({"low": 1.0, "high": 0.0}, "low must not exceed high"),
    ({"low": [0.0, 2.0], "high": 1.0}, "low must not exceed high"),
    ({"low": 0.0, "high": [1.0, -1.0]}, "low must not exceed high"),
    ({"low": [0.0, 0.0], "high": [1.0, 1.0, 1.0]}, "low and high must have the same number of values"),
    ({"low": "a"}, "must be numbers within"),
    ({"high": [1.0, 1e39]}, r"parameter 'high' must be numbers within \+-3.402823e\+38 \(float32's range\)"),
])
def test_bad_parameters_are_explained(params, message):
    with pytest.raises(ExplanationInputError, match=message):
        explain(mlp(), batch((6,), n=2), composite="epsilon_plus", **params)


def test_zbox_without_bounds_is_explained():
    with pytest.raises(ExplanationInputError, match="needs the parameters 'low' and 'high'"):
        explain(cnn(), batch((2, 10, 10)), composite="epsilon_gamma_box")


def test_named_alpha2_beta1_refuses_other_alpha():
    with pytest.raises(ExplanationInputError, match="fixes alpha=2"):
        explain(cnn(), batch((2, 10, 10)), composite="epsilon_alpha2_beta1", alpha=3.0, beta=2.0)


def test_bad_inputs_are_explained():
    with pytest.raises(ExplanationInputError, match="batch dimension"):
        explain(mlp(), torch.zeros(6, dtype=torch.float64))
    with pytest.raises(ModelPreparationError, match="integer input is taken as token ids"):
        explain(mlp(), torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(ExplanationInputError, match="output_relevance must have the logits' shape"):
        PreparedModel.from_module(mlp(), batch((6,))).explain(batch((6,), n=2), output_relevance=torch.zeros(3))


def test_intermediate_layer_relevance_is_conserved():
    model = mlp(bias=False)
    x = batch((6,), n=3)
    result = explain(model, x, composite="epsilon", layers=["1", "4"], epsilon=1e-12)
    assert set(result.layers) == {"1", "4"}
    logits = result.target_logits
    for name in ("1", "4"):
        torch.testing.assert_close(result.layers[name].sum(1), logits, rtol=1e-9, atol=1e-12)
    with pytest.raises(ExplanationInputError, match="unknown layer 'nope'"):
        explain(model, x, layers=["nope"])


def test_prepared_model_is_cached_until_weights_change():
    model = cnn()
    x = batch((2, 10, 10))
    first = prepare(model, x)
    assert prepare(model, batch((2, 10, 10), n=7, seed=3)) is first  # another batch of the same kind
    before = explain(model, x, composite="epsilon").relevance
    with torch.no_grad():
        model[0].weight.mul_(2.0)  # in place: bumps the version counter
    assert prepare(model, x) is not first
    after = explain(model, x, composite="epsilon").relevance
    expected = PreparedModel.from_module(model, x).explain(x, composite="epsilon").relevance
    torch.testing.assert_close(after, expected)
    assert not torch.allclose(before, after)


def test_a_model_in_training_mode_is_refused_where_it_would_compute_otherwise():
    x = batch((2, 10, 10))
    with pytest.raises(UnsupportedLayerError, match=r"BatchNorm in training mode .* call model.eval\(\)"):
        explain(cnn(batchnorm=True).train(), x)
    with pytest.raises(UnsupportedLayerError, match=r"dropout in training mode"):
        explain(mlp().train(), batch((6,)))
    model = cnn().train()  # no BatchNorm, no Dropout: training mode computes the same
    torch.testing.assert_close(explain(model, x).logits, model(x))


def test_to_dtype_moves_a_copy():
    prepared = PreparedModel.from_module(cnn(), batch((2, 10, 10)))
    single = prepared.to(dtype=torch.float32)
    assert single.dtype == torch.float32 and prepared.dtype == torch.float64
    x = batch((2, 10, 10))
    a = prepared.explain(x).relevance
    b = single.explain(x).relevance
    assert b.dtype == torch.float32
    assert (a - b.double()).norm() / a.norm() < 1e-5


def test_four_threads_on_one_model_equal_sequential_results():
    prepared = PreparedModel.from_module(residual(), batch((1, 8, 8)))
    composites = ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "zplus"] * 3
    inputs = [batch((1, 8, 8), n=4, seed=i) for i in range(len(composites))]

    def run(i: int) -> torch.Tensor:
        return prepared.explain(inputs[i], target=i % 3, composite=composites[i], low=-5, high=5).relevance

    sequential = [run(i) for i in range(len(composites))]
    fresh = PreparedModel.from_module(residual(), batch((1, 8, 8)))  # empty caches: threads race to build them
    prepared = fresh
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(run, range(len(composites))))
    for a, b in zip(sequential, concurrent, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


def test_a_resolved_method_is_remembered_but_a_bool_is_never_taken_for_a_number():
    model = PreparedModel.from_module(mlp(), batch((6,)))
    first = model.resolve({"base": "epsilon", "layers": {"0": "zplus"}}, epsilon=1, low=[0.0, 1.0], high=[2.0, 3.0])
    again = model.resolve({"layers": {"0": "zplus"}, "base": "epsilon"}, epsilon=1, low=[0.0, 1.0], high=[2.0, 3.0])
    assert again is first and first.params.epsilon == 1.0 and first.params.low == (0.0, 1.0)
    with pytest.raises(ExplanationInputError, match="parameter 'epsilon' must be a number, got True"):
        model.resolve({"base": "epsilon", "layers": {"0": "zplus"}}, epsilon=True, low=[0.0, 1.0], high=[2.0, 3.0])
    assert model.resolve("epsilon", epsilon=0.5) != first


def test_the_input_gradient_is_autograd_s_on_the_module():
    torch.manual_seed(4)
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
                                 torch.nn.Flatten(), torch.nn.Linear(3 * 5 * 5, 4)).eval()
    x = torch.randn(3, 1, 5, 5)
    prepared = PreparedModel.from_module(module, x)
    leaf = x.clone().requires_grad_()
    module(leaf).gather(1, torch.tensor([[2], [0], [3]])).sum().backward()
    torch.testing.assert_close(prepared.input_gradient(x, [2, 0, 3]), leaf.grad, rtol=1e-5, atol=1e-6)


def test_a_logit_the_target_does_not_select_may_overflow_without_spoiling_the_explanation():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3e38, 3e38], [1.0, 2.0]]))
    x = torch.tensor([[10.0, 10.0]])
    result = explain(model, x, target=1, composite="epsilon", epsilon=0.0)
    assert torch.isinf(result.logits[0, 0])  # class 0's logit overflows float32
    torch.testing.assert_close(result.relevance, torch.tensor([[10.0, 20.0]]))  # x_i w_1i: class 1 is fine
    torch.testing.assert_close(result.target_logits, torch.tensor([30.0]))
