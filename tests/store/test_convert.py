import json

import pytest
import torch
from safetensors.torch import save_file

from service.__main__ import main
from service.lrp import PreparedModel
from service.store.format import load_model
from tests.support.factories import net


@pytest.fixture
def trained(tmp_path):
    """A Net with non-trivial weights and BatchNorm statistics, saved both ways."""
    torch.manual_seed(3)
    module = net()
    with torch.no_grad():
        module.bn.running_mean.uniform_(-1, 1)
        module.bn.running_var.uniform_(0.5, 2)
    torch.save(module.state_dict(), tmp_path / "net.pt")
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp_path / "net.safetensors"))
    return module.eval()


@pytest.mark.parametrize("weights", ["net.pt", "net.safetensors"])
def test_convert_writes_a_model_that_reproduces_the_module(tmp_path, trained, capsys, weights):
    code = main(["convert", "tests.support.factories:net", "--weights", str(tmp_path / weights), "--name", "mine",
                 "--input-shape", "1,6,6", "--classes", "cat,dog,bird", "--models-dir", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    loaded = load_model(tmp_path / "out" / "mine")
    assert loaded.spec.classes == ["cat", "dog", "bird"]
    assert loaded.spec.output_activation == "softmax"
    x = torch.randn(4, 1, 6, 6)
    output = PreparedModel.from_graph(loaded.graph).output(x)
    torch.testing.assert_close(output, trained(x).detach(), rtol=1e-5, atol=1e-6)


def test_convert_takes_further_fields_from_a_spec_file_and_infers_class_labels(tmp_path, trained, capsys):
    spec = {"description": "mine", "input": {"kind": "image", "shape": [1, 6, 6], "range": [0, 1],
                                             "image": {"mode": "L", "mean": [0.5], "std": [0.25]}},
            "default_composite": "epsilon_gamma_box"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert main(["convert", "tests.support.factories:net", "--weights", str(tmp_path / "net.pt"), "--name", "img",
                 "--spec", str(tmp_path / "spec.json"), "--models-dir", str(tmp_path)]) == 0
    loaded = load_model(tmp_path / "img")
    assert loaded.spec.classes == ["0", "1", "2"] and loaded.spec.input.kind == "image"
    assert loaded.spec.default_composite == "epsilon_gamma_box"


@pytest.mark.parametrize("args,message", [
    (["tests.support.factories:not_a_module", "--input-shape", "4"], "returned str, not a torch.nn.Module"),
    (["tests.support.factories:missing", "--input-shape", "4"], "cannot load tests.support.factories:missing"),
    (["tests.support.factories", "--input-shape", "4"], "expected MODULE:FACTORY"),
    (["tests.support.factories:net"], "give --input-shape"),
])
def test_convert_refuses_with_a_reason(tmp_path, trained, capsys, args, message):
    weights = tmp_path / "net.pt"
    code = main(["convert", args[0], "--weights", str(weights), "--name", "x", "--models-dir", str(tmp_path),
                 *args[1:]])
    assert code == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_convert_names_the_unsupported_layer(tmp_path, capsys):
    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Hardshrink(), torch.nn.Linear(4, 2))
    torch.save(module.state_dict(), tmp_path / "w.pt")
    assert main(["convert", "tests.support.factories:with_hardshrink", "--weights", str(tmp_path / "w.pt"),
                 "--name", "hs", "--input-shape", "4", "--models-dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "unsupported" in error.lower() and "hardshrink" in error and "module '1'" in error
    assert not (tmp_path / "hs").exists()


def test_convert_refuses_mismatched_weights_and_existing_models(tmp_path, trained, capsys):
    save_file({"conv.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    assert main(["convert", "tests.support.factories:net", "--weights", str(tmp_path / "bad.safetensors"),
                 "--name", "b", "--input-shape", "1,6,6", "--models-dir", str(tmp_path)]) == 1
    assert "state_dict" in capsys.readouterr().err
    args = ["convert", "tests.support.factories:net", "--weights", str(tmp_path / "net.pt"), "--name", "twice",
            "--input-shape", "1,6,6", "--models-dir", str(tmp_path)]
    assert main(args) == 0
    assert main(args) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_pickled_objects_in_torch_files_are_not_executed(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"weight": Payload()}, tmp_path / "evil.pt")
    assert main(["convert", "tests.support.factories:net", "--weights", str(tmp_path / "evil.pt"), "--name", "e",
                 "--input-shape", "1,6,6", "--models-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "code ran" not in captured.out and "cannot read" in captured.err
