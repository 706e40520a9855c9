"""A request decoded into a job: the composite, the merged parameters and the targets, each decided once."""

import pytest
import torch

from service.errors import InvalidInputError
from service.inference import explain_job
from service.inference.job import resolve_targets
from service.modality.instances import Decoded
from tests.conftest import model_json

TWO = Decoded(torch.zeros(2, 30))


def test_request_params_win_over_model_defaults_which_apply_to_the_default_composite_only(registry):
    walkthrough = Decoded(torch.zeros(1, 3))
    entry = registry.get("walkthrough")
    assert explain_job(entry, walkthrough, None, None, {}).params == {"epsilon": 0.0}
    assert explain_job(entry, walkthrough, None, "epsilon", {"epsilon": 0.5}).params == {"epsilon": 0.5}
    assert explain_job(entry, walkthrough, None, "zplus", {}).params == {}
    digits = registry.get("digits")
    low, high = digits.bounds
    job = explain_job(digits, Decoded(torch.zeros(1, 1, 8, 8)), None, "epsilon_gamma_box", {"gamma": 0.5})
    assert job.params == {"low": low, "high": high, "gamma": 0.5}
    assert job.key.method.params.gamma == 0.5 and job.key.method.params.low == low
    assert job.composite == "epsilon_gamma_box"


def test_no_composite_means_the_model_s_default(registry):
    entry = registry.get("digits")
    job = explain_job(entry, Decoded(torch.zeros(1, 1, 8, 8)), None, None, {})
    default = model_json("digits")
    assert job.composite == default["default_composite"] == job.key.method.composite.name
    assert job.key.method.params.epsilon == default["default_params"]["epsilon"]


def test_jobs_with_the_same_composite_and_parameters_share_a_batch_key(registry):
    entry = registry.get("digits")
    one = explain_job(entry, Decoded(torch.zeros(1, 1, 8, 8)), None, "epsilon", {"epsilon": 0.1})
    two = explain_job(entry, Decoded(torch.ones(3, 1, 8, 8)), 4, "epsilon", {"epsilon": 0.1})
    other = explain_job(entry, Decoded(torch.zeros(1, 1, 8, 8)), None, "epsilon", {"epsilon": 0.2})
    assert one.key == two.key and hash(one.key) == hash(two.key)
    assert one.key != other.key


def test_targets_by_index_label_list_or_none(registry):
    entry = registry.get("breast-cancer")
    assert resolve_targets(entry, None, 2) == [None, None]
    assert resolve_targets(entry, "malignant", 2) == [(0,), (0,)]
    assert resolve_targets(entry, [1, None, "malignant"], 3) == [(1,), None, (0,)]
    job = explain_job(entry, TWO, ["benign", None], None, {})
    assert [sample.target for sample in job.samples] == [(1,), None]
    assert [sample.position for sample in job.samples] == [0, 1]


@pytest.mark.parametrize("target,message", [
    (2, "target: class index 2 is out of range; the model has 2 classes (0..1)"),
    ("healthy", "unknown class label 'healthy'; labels are ['malignant', 'benign']"),
    ([0], "target has 1 entries but there are 2 inputs"),
    ([0, True], "target[1] must be a class index or label, not a boolean"),
])
def test_bad_targets_say_how_to_fix_them(registry, target, message):
    with pytest.raises(InvalidInputError) as raised:
        explain_job(registry.get("breast-cancer"), TWO, target, None, {})
    assert message in str(raised.value)


@pytest.mark.parametrize("composite,params,message", [
    ("best", {}, "unknown composite 'best'"),
    ("alpha_beta", {"alpha": 3.0, "beta": 1.0}, "alpha - beta must equal 1"),
    ("epsilon_alpha2_beta1", {"alpha": 3.0, "beta": 2.0}, "composite 'epsilon_alpha2_beta1' fixes alpha=2"),
    ("epsilon_gamma_box", {"low": [0.0, 0.0], "high": [1.0, 1.0]},
     "parameter 'low' has 2 values, but layer '0' (zbox rule) takes 1 input channel(s): give one value, or 1"),
])
def test_bad_composites_and_parameters_are_refused_before_queueing(registry, composite, params, message):
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        explain_job(registry.get("digits"), Decoded(torch.zeros(1, 1, 8, 8)), None, composite, params)
