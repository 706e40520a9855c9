"""The device side of the pipeline: batched passes against hand formulas and the engine, and samples that fail
alone (overflow, non-finite relevance, device memory)."""

import numpy as np
import pytest
import torch

from service.errors import DeviceMemoryError, InvalidInputError, NumericalError
from service.inference import PREDICT, Sample, explain_job, run_batch
from service.loader import load_directory
from service.lrp import PreparedModel
from service.modality.instances import Decoded
from service.settings import Settings
from tests.conftest import model_json
from tests.support.modelfiles import write_model

# The 3-3-1 network of docs/rules.md, written out independently of the shipped files.
W1 = np.array([[0.3, 0.2, 0.4], [0.6, 0.1, 0.5], [0.8, 0.6, 0.2]])
B1 = 0.5
W2 = np.array([0.3, 0.1, 0.4])
B2 = 0.1
X = np.array([1.0, 0.8, 0.2])
BATCH = torch.tensor([[1.0, 0.8, 0.2], [0.1, 0.9, 0.4], [0.5, 0.5, 0.5], [0.0, 0.3, 1.0], [0.7, 0.2, 0.6]])


def samples(x, target=None):
    return [Sample(row, i, target) for i, row in enumerate(x)]


def explain(entry, x, target=None, composite=None, params=None):
    """The results of one explain request's batch, as the device thread computes them."""
    job = explain_job(entry, Decoded(x), target, composite, params or {})
    return run_batch(entry, job.key, list(job.samples))


def epsilon_key(entry):
    return explain_job(entry, Decoded(BATCH), 0, "epsilon", {"epsilon": 0.01}).key


def test_walkthrough_weights_give_the_published_hidden_values(registry):
    graph = registry.get("walkthrough").prepared.graph
    hidden = next(n for n in graph.nodes if n.op == "linear")
    values = hidden.params["weight"].double() @ torch.tensor(X) + hidden.params["bias"].double()
    np.testing.assert_allclose(values.numpy(), [1.04, 1.28, 1.82], atol=1e-6)


def test_walkthrough_prediction_is_logit_1_268_probability_0_78(registry):
    (prediction,) = run_batch(registry.get("walkthrough"), PREDICT, samples(torch.tensor(X[None], dtype=torch.float32)))
    assert prediction.logits == pytest.approx([1.268], abs=1e-6)
    assert prediction.probabilities == pytest.approx([1 / (1 + np.exp(-1.268))], abs=1e-6)
    assert round(prediction.probabilities[0], 2) == 0.78
    assert prediction.predicted_class == 0 and registry.get("walkthrough").classes[0] == "positive"


def test_walkthrough_epsilon_relevance_matches_the_hand_formula(registry):
    hidden = W1 @ X + B1
    logit = W2 @ hidden + B2
    r_hidden = W2 * hidden / logit * logit  # epsilon = 0: R_j = z_j / (sum_k z_k + b) * R, R = logit
    r_input = sum(X * W1[j] / hidden[j] * r_hidden[j] for j in range(3))
    (result,) = explain(registry.get("walkthrough"), torch.tensor(X[None], dtype=torch.float32))
    np.testing.assert_allclose(result.relevance, r_input, rtol=1e-5)
    assert result.logit == pytest.approx(1.268, abs=1e-6)
    assert result.relevance_sum == pytest.approx(r_input.sum(), rel=1e-5)
    assert result.conservation_delta == pytest.approx(logit - r_input.sum(), abs=1e-5)


def _standardised(example: dict[str, float]) -> torch.Tensor:
    document = model_json("breast-cancer")
    features = document["input"]["features"]
    mean = np.array(document["input"]["standardization"]["mean"])
    std = np.array(document["input"]["standardization"]["std"])
    raw = np.array([example[name] for name in features])
    return torch.tensor(((raw - mean) / std)[None], dtype=torch.float32)


def test_service_explain_equals_the_engine_on_the_same_model_and_parameters(registry):
    entry = registry.get("breast-cancer")
    x = _standardised(model_json("breast-cancer")["input"]["example"])
    (result,) = explain(entry, x, "benign", "epsilon", {"epsilon": 0.25})
    direct = PreparedModel.from_graph(entry.prepared.graph).explain(x, 1, "epsilon", epsilon=0.25)
    np.testing.assert_allclose(result.relevance, direct.relevance[0].numpy(), rtol=1e-6)
    assert (result.targets, entry.classes[result.targets[0]]) == ((1,), "benign")


def test_a_batch_gives_each_sample_what_it_gets_alone(registry):
    entry = registry.get("walkthrough")
    batched = run_batch(entry, epsilon_key(entry), samples(BATCH, (0,)))
    for x, result in zip(BATCH, batched, strict=True):
        (alone,) = explain(entry, x[None], 0, "epsilon", {"epsilon": 0.01})
        np.testing.assert_allclose(result.relevance, alone.relevance, rtol=1e-6)
    predictions = run_batch(entry, PREDICT, samples(BATCH))
    for x, prediction in zip(BATCH, predictions, strict=True):
        (alone,) = run_batch(entry, PREDICT, samples(x[None]))
        np.testing.assert_allclose(prediction.logits, alone.logits, rtol=1e-6)


def _relevance_nan_at(entry, index, monkeypatch):
    """Make the entry's explanations carry a NaN at `index` of their relevance."""
    real = entry.prepared.explain_resolved

    def with_nan(x, *args, **kwargs):
        result = real(x, *args, **kwargs)
        result.relevance[index] = float("nan")
        return result

    monkeypatch.setattr(entry.prepared, "explain_resolved", with_nan)


def test_a_non_finite_relevance_fails_only_its_own_sample(registry, monkeypatch):
    entry = registry.get("walkthrough")
    _relevance_nan_at(entry, (2, 1), monkeypatch)
    defaults = explain_job(entry, Decoded(BATCH), 0, None, {}).key  # the model's own composite and parameters
    results = run_batch(entry, defaults, samples(BATCH, (0,)))
    assert isinstance(results[2], NumericalError) and "larger epsilon" in results[2].message
    chosen = run_batch(entry, epsilon_key(entry), samples(BATCH, (0,)))  # epsilon 0.01 chosen by the client
    assert isinstance(chosen[2], InvalidInputError) and chosen[2].status == 422
    default_epsilon = model_json("walkthrough")["default_params"].get("epsilon", 1e-6)
    assert f"epsilon=0.01 (the model's default: {default_epsilon!r})" in chosen[2].message
    assert all(not isinstance(r, Exception) for i, r in enumerate(chosen) if i != 2)
    assert results[2].message.startswith("inputs[2]: its relevance is not finite")
    assert all(np.isfinite(r.relevance).all() for i, r in enumerate(results) if i != 2)


def test_an_input_whose_logits_overflow_fails_alone_with_422(registry):
    entry = registry.get("walkthrough")
    huge = torch.full((3,), float(np.finfo(np.float32).max))  # a valid float32 whose logit is +inf
    batch = torch.cat([BATCH[:2], huge[None], BATCH[2:]])
    for key, target in ((PREDICT, None), (epsilon_key(entry), (0,))):
        results = run_batch(entry, key, [Sample(x, 7, target) for x in batch])
        assert isinstance(results[2], InvalidInputError) and results[2].status == 422
        assert results[2].message.startswith("inputs[7]: model 'walkthrough' overflows float32 on it")
        others = results[:2] + results[3:]
        expected = run_batch(entry, key, samples(BATCH, target))
        field = "relevance" if key.method is not None else "logits"
        np.testing.assert_allclose([getattr(r, field) for r in others], [getattr(e, field) for e in expected],
                                   rtol=1e-6)


def out_of_memory_above(limit, sizes, real, poisoned=None):
    """An engine call that records each batch size and raises CUDA's out-of-memory error above `limit` inputs
    (or whenever the batch holds the `poisoned` input)."""

    def call(x, *args, **kwargs):
        sizes.append(len(x))
        if len(x) > limit or (poisoned is not None and any(torch.equal(row, poisoned) for row in x)):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(x, *args, **kwargs)

    return call


def test_out_of_memory_halves_the_batch_until_it_fits(registry, monkeypatch):
    entry = registry.get("walkthrough")
    key = epsilon_key(entry)
    expected = run_batch(entry, key, samples(BATCH, (0,)))
    sizes: list[int] = []
    real = entry.prepared.explain_resolved
    monkeypatch.setattr(entry.prepared, "explain_resolved", out_of_memory_above(2, sizes, real))
    results = run_batch(entry, key, samples(BATCH, (0,)))
    assert sizes == [5, 2, 3, 1, 2]
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got.relevance, want.relevance, rtol=1e-6)


def test_an_input_too_large_even_alone_fails_alone(registry, monkeypatch):
    entry = registry.get("walkthrough")
    expected = run_batch(entry, PREDICT, samples(BATCH[[0, 1, 2, 4]]))
    sizes: list[int] = []
    monkeypatch.setattr(entry.prepared, "predict", out_of_memory_above(8, sizes, entry.prepared.predict, BATCH[3]))
    results = run_batch(entry, PREDICT, samples(BATCH))
    assert isinstance(results[3], DeviceMemoryError) and results[3].status == 500
    assert sizes == [5, 2, 3, 1, 2, 1, 1]  # 5 -> 2 + 3 -> 1 + 2 -> the poisoned input alone, then the last one
    kept = [r.logits for i, r in enumerate(results) if i != 3]
    np.testing.assert_allclose(np.asarray(kept), np.asarray([p.logits for p in expected]), rtol=1e-6)


def test_non_finite_relevance_under_a_rule_map_default_with_its_own_parameters_is_the_server_s(tmp_path, monkeypatch):
    """The model's own defaults hold for its default composite however it is written (a rule map included): a
    request that keeps them is not told that it chose them."""
    write_model(tmp_path / "mapped", default_composite={"base": "epsilon", "types": {"conv": "zplus"}},
                default_params={"epsilon": 0.5})
    entry = load_directory(tmp_path, torch.device("cpu"), Settings(models_dir=tmp_path)).get("mapped")
    _relevance_nan_at(entry, (0, 0), monkeypatch)
    rows = torch.zeros(2, 1, 4, 4)
    kept = run_batch(entry, explain_job(entry, Decoded(rows), None, None, {}).key, samples(rows))
    assert isinstance(kept[0], NumericalError) and not isinstance(kept[1], Exception)
    chosen = run_batch(entry, explain_job(entry, Decoded(rows), None, None, {"epsilon": 0.25}).key, samples(rows))
    assert isinstance(chosen[0], InvalidInputError) and "epsilon=0.25 (the model's default: 0.5)" in chosen[0].message
