"""Rule assignment: zennit's composites, first layer by execution order, rule maps by type and by name."""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from torch import nn

from service.lrp import ExplanationInputError, PreparedModel
from tests.lrp.nets import batch, cnn, mlp, weighted_layers


def _rules(model: nn.Module, composite) -> list[str]:
    prepared = PreparedModel.from_module(model, batch((6,) if isinstance(model[0], nn.Linear) else (2, 10, 10)))
    assigned = prepared.rules(composite)
    return [assigned[node.name] for node in weighted_layers(prepared)]


@pytest.mark.parametrize("composite,expected", [
    ("epsilon_plus", ["zplus", "zplus", "epsilon", "epsilon"]),
    ("epsilon_plus_flat", ["flat", "zplus", "epsilon", "epsilon"]),
    ("epsilon_gamma_box", ["zbox", "gamma", "epsilon", "epsilon"]),
    ("epsilon_alpha2_beta1", ["alpha_beta", "alpha_beta", "epsilon", "epsilon"]),
    ("epsilon_alpha2_beta1_flat", ["flat", "alpha_beta", "epsilon", "epsilon"]),
    ("wsquare", ["wsquare"] * 4),
])
def test_named_composites_on_a_cnn(composite, expected):
    assert _rules(cnn(), composite) == expected


def test_first_layer_rules_on_an_mlp():
    assert _rules(mlp(), "epsilon_plus_flat") == ["flat", "epsilon", "epsilon"]
    assert _rules(mlp(), "epsilon_gamma_box") == ["epsilon", "epsilon", "epsilon"]  # zbox is for convolutions


class RegisteredBackwards(nn.Module):
    """Modules registered in the opposite order to the one they run in."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.stem = nn.Conv1d(1, 1, 3)

    def forward(self, x):
        return self.head(F.relu(self.stem(x)).flatten(1))


def test_first_means_first_in_execution_order():
    prepared = PreparedModel.from_module(RegisteredBackwards(), batch((1, 6)))
    assert prepared.rules("epsilon_plus_flat") == {"stem": "flat", "head": "epsilon"}


def test_rule_map_by_type_and_by_name():
    composite = {"base": "epsilon_plus_flat", "types": {"linear": "gamma"}, "layers": {"3": "wsquare"}}
    assert _rules(cnn(), composite) == ["flat", "wsquare", "gamma", "gamma"]


def test_layer_rules_list_every_layer():
    listed = PreparedModel.from_module(cnn(batchnorm=True), batch((2, 10, 10))).layer_rules("epsilon_plus_flat")
    by_name = {row["name"]: row["rule"] for row in listed}
    assert by_name == {"0": "flat", "2": "pass", "3": "gradient", "4": "zplus", "5": "pass", "6": "norm",
                       "7": "gradient", "8": "epsilon", "9": "pass", "10": "epsilon", "1": "folded into 0"}


@pytest.mark.parametrize("composite,message", [
    ("lrp_magic", "unknown composite 'lrp_magic'"),
    ({"base": "epsilon", "layers": {"nope": "flat"}}, "not Linear/Conv layers"),
    ({"base": "epsilon", "types": {"linear": "magic"}}, "unknown rule"),
    ({"base": "epsilon", "types": {"lstm": "flat"}}, "not layer types"),
    ({"rules": {}}, "unknown rule map key"),
    (42, "must be a name or a rule map"),
])
def test_bad_composites_are_explained(composite, message):
    with pytest.raises(ExplanationInputError, match=message):
        PreparedModel.from_module(cnn(), batch((2, 10, 10))).rules(composite)
