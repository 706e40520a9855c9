import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from service.errors import ModelFileError
from service.lrp import PreparedModel
from service.store.format import load_model, readable_json
from tests.support.modelfiles import assert_refused, edit_json, tiny_cnn, write_model


def test_round_trip_reproduces_the_module(tmp_path):
    module = tiny_cnn()
    loaded = load_model(write_model(tmp_path / "m", module))
    x = torch.randn(5, 1, 4, 4)
    logits = PreparedModel.from_graph(loaded.graph).predict(x)
    torch.testing.assert_close(logits, module(x).detach(), rtol=1e-5, atol=1e-6)
    assert loaded.name == "m" and loaded.spec.classes == ["a", "b", "c"]


def test_weights_are_keyed_node_dot_param(tmp_path):
    write_model(tmp_path / "m")
    keys = set(load_file(str(tmp_path / "m" / "weights.safetensors")))
    document = json.loads((tmp_path / "m" / "model.json").read_text())
    expected = {f"{n['name']}.{p}" for n in document["graph"]["nodes"] for p in n["params"]}
    assert keys == expected
    assert len(keys) == 2 + 4 + 2  # conv weight/bias, BN mean/var/weight/bias, linear weight/bias


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.shared(torch.relu(self.shared(x)))))


def test_a_module_called_twice_stores_its_tensors_once_and_shares_them(tmp_path):
    module = Twice().eval()
    loaded = load_model(write_model(tmp_path / "m", module, input={"kind": "tensor", "shape": [4]},
                                    classes=["x", "y"]))
    first, second = (n for n in loaded.graph.nodes if n.module == "shared")
    assert first.params["weight"] is second.params["weight"]
    assert len(load_file(str(tmp_path / "m" / "weights.safetensors"))) == 4
    x = torch.randn(3, 4)
    torch.testing.assert_close(PreparedModel.from_graph(loaded.graph).predict(x), module(x).detach())


def _drop_tensor(directory):
    tensors = load_file(str(directory / "weights.safetensors"))
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, str(directory / "weights.safetensors"))


def _reshape_tensor(directory):
    tensors = load_file(str(directory / "weights.safetensors"))
    key = next(k for k in tensors if k.endswith("weight") and tensors[k].dim() == 2)
    tensors[key] = torch.zeros(3, 31)
    save_file(tensors, str(directory / "weights.safetensors"))


def _nan_tensor(directory):
    tensors = load_file(str(directory / "weights.safetensors"))
    key = sorted(tensors)[0]
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, str(directory / "weights.safetensors"))


def _extra_tensor(directory):
    tensors = load_file(str(directory / "weights.safetensors"))
    tensors["stray"] = torch.zeros(2)
    save_file(tensors, str(directory / "weights.safetensors"))


def _pickle_weights(directory):
    (directory / "weights.safetensors").write_bytes(pickle.dumps({"weight": [1.0]}))


def _node(document, op):
    return next(n for n in document["graph"]["nodes"] if n["op"] == op)


@pytest.mark.parametrize("corrupt,message", [
    (lambda d: (d / "model.json").write_text("{not json"), "model.json is not valid JSON"),
    (lambda d: (d / "model.json").unlink(), "model.json is missing"),
    (lambda d: (d / "weights.safetensors").unlink(), "weights.safetensors is missing"),
    (_pickle_weights, "weights.safetensors is not a valid safetensors file"),
    (_drop_tensor, "has no tensor"),
    (_extra_tensor, "tensor(s) no node uses: ['stray']"),
    (_reshape_tensor, "weights.safetensors does not fit the graph in model.json"),
    (_nan_tensor, "contains NaN or Inf"),
    (lambda d: edit_json(d, lambda doc: doc.update(classes=["a", "b"])), "\"classes\" lists 2"),
    (lambda d: edit_json(d, lambda doc: doc["input"].update(kind="audio")), "input.kind"),
    (lambda d: edit_json(d, lambda doc: doc.update(colour="red")), "colour: Extra inputs are not permitted"),
    (lambda d: edit_json(d, lambda doc: doc.update(batching={"cpu_threads": 0})), "batching.cpu_threads"),
    (lambda d: edit_json(d, lambda doc: _node(doc, "linear").update(op="lstm")), "unsupported op 'lstm'"),
    (lambda d: edit_json(d, lambda doc: _node(doc, "conv2d")["attrs"].update(stride=[1])),
     "attribute 'stride' must be a list of 2 int(s), got [1]"),
    (lambda d: edit_json(d, lambda doc: _node(doc, "activation")["attrs"].update(fn="swish")),
     "attribute 'fn' must be one of"),
    (lambda d: edit_json(d, lambda doc: _node(doc, "conv2d")["attrs"].pop("stride")),
     "op 'conv2d' needs the attribute 'stride' (a list of 2 int(s))"),
    (lambda d: edit_json(d, lambda doc: _node(doc, "activation")["attrs"].update(fn="leaky_relu", negative_slope="x")),
     "attribute 'negative_slope' must be a finite number, got 'x'"),
    (lambda d: edit_json(d, lambda doc: _node(doc, "activation")["attrs"].update(slope=2)),
     "unknown attribute(s) ['slope']"),
    (lambda d: edit_json(d, lambda doc: _node(doc, "linear").update(inputs=["nowhere"])),
     "reads ['nowhere'] before they are computed"),
    (lambda d: edit_json(d, lambda doc: doc["graph"].update(output="nowhere")), "output node 'nowhere'"),
    (lambda d: edit_json(d, lambda doc: _node(doc, "batchnorm")["params"].pop("running_var")),
     "needs params ['running_mean', 'running_var']"),
])
def test_malformed_models_are_refused_naming_model_file_and_problem(tmp_path, corrupt, message):
    directory = write_model(tmp_path / "broken")
    corrupt(directory)
    assert_refused(directory, message)


def test_unpickling_is_never_attempted(tmp_path, monkeypatch):
    directory = write_model(tmp_path / "m")
    _pickle_weights(directory)
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads was called"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(ModelFileError):
        load_model(directory)


def test_image_input_needs_matching_channels(tmp_path):
    directory = write_model(tmp_path / "m")
    edit_json(directory, lambda doc: doc.update(input={
        "kind": "image", "shape": [1, 4, 4], "range": [0, 1], "image": {"mode": "RGB", "mean": [0], "std": [1]}}))
    with pytest.raises(ModelFileError, match="image mode RGB has 3 channel"):
        load_model(directory)


def test_an_image_resampling_filter_must_be_one_pillow_has(tmp_path):
    directory = write_model(tmp_path / "m")
    edit_json(directory, lambda doc: doc.update(input={"kind": "image", "shape": [1, 4, 4], "range": [0, 1], "image": {
        "mode": "L", "mean": [0], "std": [1], "resample": "smooth"}}))
    assert_refused(directory, "input.image.resample: Input should be 'area', 'bilinear', 'bicubic', 'lanczos' or "
                              "'nearest'")


def test_tabular_input_needs_one_name_per_feature(tmp_path):
    directory = write_model(tmp_path / "m")
    edit_json(directory, lambda doc: doc.update(input={"kind": "tabular", "shape": [16], "features": ["a"]}))
    with pytest.raises(ModelFileError, match="N feature names"):
        load_model(directory)


def test_readable_json_is_json_and_short_lines():
    document = {"a": list(range(100)), "b": {"c": [[1, 2], [3, 4]], "d": "x" * 30}, "e": []}
    text = readable_json(document)
    assert json.loads(text) == document
    assert max(len(line) for line in text.splitlines()) <= 110
    assert text.count("\n") < 20
