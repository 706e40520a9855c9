import dataclasses
import logging

import pytest
import torch

from service.errors import MESSAGE_LIMIT, InvalidModelError, ModelFileError, ModelNotFoundError
from service.loader import load as loader_load
from service.loader import load_directory
from service.serving.config import ServingConfig
from service.settings import Settings
from service.store.from_module import convert_module
from tests.support.modelfiles import edit_json, write_model


def test_good_models_load_while_bad_ones_are_refused_and_logged(tmp_path, caplog):
    write_model(tmp_path / "good")
    write_model(tmp_path / "wrong-classes", classes=["only"])
    write_model(tmp_path / "bad-composite")
    edit_json(tmp_path / "bad-composite", lambda doc: doc.update(default_composite="nonsense"))
    (tmp_path / "empty").mkdir()  # no model.json: not a model directory
    (tmp_path / "README.md").write_text("notes")
    with caplog.at_level(logging.ERROR, logger="service.registry"):
        registry = load_directory(tmp_path, torch.device("cpu"), Settings())
    assert registry.names == ["good"]
    assert sorted(registry.failures) == ["bad-composite", "wrong-classes"]
    assert "model 'wrong-classes': model.json" in registry.failures["wrong-classes"]
    assert "unknown composite 'nonsense'" in registry.failures["bad-composite"]
    assert "refused model: model 'wrong-classes'" in caplog.text


def test_missing_directory_serves_nothing_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="service.registry"):
        registry = load_directory(tmp_path / "absent", torch.device("cpu"), Settings())
    assert registry.names == [] and "does not exist (set LRP_MODELS_DIR)" in caplog.text


def test_unknown_model_lists_the_available_ones(registry):
    with pytest.raises(ModelNotFoundError, match=r"no model named 'cat'; available models are \['breast-cancer', "
                       r"'digits', 'digits-vit', 'residual', 'sentiment', 'walkthrough'\]"):
        registry.get("cat")


def test_layers_list_the_rule_of_each_layer_under_the_default_composite(registry):
    shipped = registry.get("digits")
    designed = shipped.spec.model_copy(update={"default_composite": "epsilon_gamma_box"})
    entry = dataclasses.replace(shipped, spec=designed)
    layers = {layer["name"]: layer for layer in entry.layers()}
    assert layers["0"]["rule"] == "zbox"  # first conv of epsilon_gamma_box
    assert layers["4"]["rule"] == "gamma"
    assert layers["9"]["rule"] == "epsilon"
    assert layers["1"]["rule"] == "folded into 0"
    assert layers["3"]["rule"] == "gradient"  # max pooling


def test_a_model_s_own_batching_values_win_over_the_service_settings(tmp_path):
    write_model(tmp_path / "own")
    edit_json(tmp_path / "own", lambda doc: doc.update(
        batching={"max_batch_size": 4, "max_delay_ms": 0, "timeout_s": 2.5, "cpu_threads": 2,
                  "max_batch_tokens": 256}))
    write_model(tmp_path / "inherits")
    settings = Settings(max_batch_size=32, max_delay_ms=5, max_queue=100, request_timeout_s=30, cpu_threads=3,
                        max_batch_tokens=1000)
    registry = load_directory(tmp_path, torch.device("cpu"), settings)
    assert registry.get("own").serving == ServingConfig(max_batch_size=4, max_delay_ms=0.0, max_queue=100,
                                                        timeout_s=2.5, cpu_threads=2, max_batch_tokens=256)
    assert registry.get("inherits").serving == ServingConfig(max_batch_size=32, max_delay_ms=5.0, max_queue=100,
                                                             timeout_s=30.0, cpu_threads=3, max_batch_tokens=1000)


def test_one_model_s_failure_of_any_kind_is_that_model_s_and_the_others_load(tmp_path, monkeypatch, caplog):
    """A model.json nested 100,000 deep (json.loads recurses) and a load that fails with an unexpected exception each
    refuse their own model only; start-up still serves the others."""
    write_model(tmp_path / "good")
    write_model(tmp_path / "deep")
    (tmp_path / "deep" / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    write_model(tmp_path / "broken")
    real = loader_load.load_entry

    def load_entry(path, *args, **kwargs):
        if path.name == "broken":
            raise RuntimeError("an unexpected fault")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loader_load, "load_entry", load_entry)
    with caplog.at_level(logging.ERROR, logger="service.registry"):
        registry = load_directory(tmp_path, torch.device("cpu"), Settings())
    assert registry.names == ["good"]
    assert registry.failures["deep"] == "model 'deep': model.json is nested too deeply to read; a model.json nests " \
        "a few levels (objects of lists of numbers)"
    assert registry.failures["broken"] == "model 'broken': could not be loaded (RuntimeError: an unexpected fault)"
    assert "refused model 'broken'" in caplog.text and "Traceback" in caplog.text  # the fault's stack is logged


def test_error_messages_are_bounded_with_the_count_of_what_was_cut():
    names = ", ".join(f"tensor_{i}" for i in range(100_000))
    refused = ModelFileError(f"model 'm': weights.safetensors has tensors the graph does not: {names}")
    message = str(refused)
    assert len(message) < MESSAGE_LIMIT + 40 and message.startswith("model 'm': weights.safetensors has tensors")
    cut = len("model 'm': weights.safetensors has tensors the graph does not: ") + len(names) - MESSAGE_LIMIT
    assert message.endswith(f"... ({cut} more characters)")
    assert InvalidModelError(message + "x" * 10).message.endswith("more characters)")
    assert ModelFileError("short").args == ("short",)


def test_a_model_whose_output_is_not_finite_on_the_warm_up_input_is_refused_at_load(tmp_path):
    """A LayerNorm without epsilon divides 0 by 0 on an input of zeros: found at load, not as a 500 per request."""
    module = torch.nn.Sequential(torch.nn.LayerNorm(4, eps=0.0), torch.nn.Linear(4, 2))
    convert_module(module, tmp_path / "m", {"input": {"kind": "tensor", "shape": [4]}, "classes": ["a", "b"],
                                            "default_composite": "epsilon"})
    with pytest.raises(ModelFileError, match=r"model 'm': its logits are not finite on the warm-up input \(zeros\)"):
        loader_load.load_entry(tmp_path / "m", torch.device("cpu"), Settings())
