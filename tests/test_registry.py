import logging

import pytest
import torch

from service.errors import ModelNotFoundError
from service.registry import Registry, default_params, resolve_device
from tests.modelfiles import edit_json, write_model


def test_good_models_load_while_bad_ones_are_refused_and_logged(tmp_path, caplog):
    write_model(tmp_path / "good")
    write_model(tmp_path / "wrong-classes", classes=["only"])
    write_model(tmp_path / "bad-composite")
    edit_json(tmp_path / "bad-composite", lambda doc: doc.update(default_composite="nonsense"))
    (tmp_path / "empty").mkdir()  # no model.json: not a model directory
    (tmp_path / "README.md").write_text("notes")
    with caplog.at_level(logging.ERROR, logger="service.registry"):
        registry = Registry.from_directory(tmp_path, torch.device("cpu"))
    assert sorted(registry.models) == ["good"]
    assert sorted(registry.failures) == ["bad-composite", "wrong-classes"]
    assert "model 'wrong-classes': model.json" in registry.failures["wrong-classes"]
    assert "unknown composite 'nonsense'" in registry.failures["bad-composite"]
    assert "refused model: model 'wrong-classes'" in caplog.text


def test_missing_directory_serves_nothing_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="service.registry"):
        registry = Registry.from_directory(tmp_path / "absent", torch.device("cpu"))
    assert registry.models == {} and "does not exist (set LRP_MODELS_DIR)" in caplog.text


def test_unknown_model_lists_the_available_ones(registry):
    with pytest.raises(ModelNotFoundError, match=r"no model named 'cat'; available models are \['breast-cancer', "
                       r"'digits', 'residual', 'walkthrough'\]"):
        registry.get("cat")


def test_request_params_win_over_model_defaults_which_apply_to_the_default_composite_only(registry):
    walkthrough = registry.get("walkthrough")
    assert default_params(walkthrough, "epsilon", {}) == {"epsilon": 0.0}
    assert default_params(walkthrough, "epsilon", {"epsilon": 0.5}) == {"epsilon": 0.5}
    assert default_params(walkthrough, "zplus", {}) == {}
    digits = registry.get("digits")
    low, high = digits.bounds
    assert default_params(digits, "epsilon_gamma_box", {"gamma": 0.5}) == {"low": low, "high": high, "gamma": 0.5}


def test_layers_list_the_rule_of_each_layer_under_the_default_composite(registry):
    layers = {layer["name"]: layer for layer in registry.get("digits").layers()}
    assert layers["0"]["rule"] == "zbox"  # first conv of epsilon_gamma_box
    assert layers["4"]["rule"] == "gamma"
    assert layers["9"]["rule"] == "epsilon"
    assert layers["1"]["rule"] == "folded into 0"
    assert layers["3"]["rule"] == "gradient"  # max pooling


def test_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="LRP_DEVICE=cuda:0 but that CUDA device is not available"):
            resolve_device("cuda:0")
