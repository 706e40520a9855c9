"""A model's files are measured before they are parsed or allocated: model.json's bytes and nodes, the input's
values, the safetensors header's bytes and the tensors it lists, tokenizer.json's bytes; each limit a setting named
in the refusal, and every other model still loads."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
import torch

from service.errors import ModelFileError
from service.loader import load_directory
from service.settings import ModelLimits, Settings
from service.store.format import load_model
from tests.support.modelfiles import edit_json, write_model, write_text_model


def _refused(directory: Path, limits: ModelLimits) -> str:
    with pytest.raises(ModelFileError) as raised:
        load_model(directory, limits=limits)
    return str(raised.value)


def test_each_file_is_measured_against_its_limit(tmp_path):
    directory = write_model(tmp_path / "m")
    size = (directory / "model.json").stat().st_size
    nodes = len(json.loads((directory / "model.json").read_text())["graph"]["nodes"])
    header = struct.unpack("<Q", (directory / "weights.safetensors").read_bytes()[:8])[0]
    assert _refused(directory, ModelLimits(model_json_bytes=size - 1)) == (
        f"model 'm': model.json has {size} bytes; the limit is {size - 1} (LRP_MAX_MODEL_JSON_BYTES)")
    assert _refused(directory, ModelLimits(graph_nodes=nodes - 1)) == (
        f"model 'm': model.json: the graph has {nodes} nodes; the limit is {nodes - 1} (LRP_MAX_GRAPH_NODES)")
    assert _refused(directory, ModelLimits(input_values=15)) == (
        "model 'm': model.json: an input of shape [1, 4, 4] has 16 values; the limit is 15 (LRP_MAX_INPUT_VALUES)")
    assert _refused(directory, ModelLimits(weights_header_bytes=header - 1)) == (
        f"model 'm': weights.safetensors has a header of {header} bytes; the limit is {header - 1} "
        "(LRP_MAX_WEIGHTS_HEADER_BYTES)")
    limits = ModelLimits(model_json_bytes=size, graph_nodes=nodes, input_values=16, weights_header_bytes=header)
    assert load_model(directory, limits=limits).name == "m"  # each limit is inclusive


def test_a_tokenizer_over_its_limit_is_refused_before_it_is_parsed(tmp_path):
    directory = write_text_model(tmp_path / "t")
    size = (directory / "tokenizer.json").stat().st_size
    assert _refused(directory, ModelLimits(tokenizer_bytes=size - 1)) == (
        f"model 't': tokenizer.json has {size} bytes; the limit is {size - 1} (LRP_MAX_TOKENIZER_BYTES)")


def test_a_header_listing_a_hundred_thousand_empty_tensors_is_refused_before_any_is_made(tmp_path):
    directory = write_model(tmp_path / "many")
    header = json.dumps({f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                         for i in range(100_000)}).encode()
    (directory / "weights.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    named = len({key for node in json.loads((directory / "model.json").read_text())["graph"]["nodes"]
                 for key in node.get("params", {}).values()})
    started = time.perf_counter()
    message = _refused(directory, ModelLimits())
    elapsed = time.perf_counter() - started
    assert message == (f"model 'many': weights.safetensors lists 100000 tensors; the graph in model.json names "
                       f"{named}: these are not this model's weights")
    assert elapsed < 30  # a bound only a regression to loading every tensor reaches, not a speed measurement


def test_the_settings_set_the_limits_and_the_other_models_still_load(tmp_path):
    write_model(tmp_path / "small")
    write_model(tmp_path / "wide")
    edit_json(tmp_path / "wide", lambda document: document["input"].update(shape=[1, 8, 8]))
    settings = Settings(models_dir=tmp_path, max_input_values=32)
    assert settings.model_limits == ModelLimits(input_values=32)
    registry = load_directory(tmp_path, torch.device("cpu"), settings)
    assert registry.names == ["small"]
    assert registry.failures["wide"].endswith("has 64 values; the limit is 32 (LRP_MAX_INPUT_VALUES)")


def test_json_nested_past_64_levels_is_refused_before_the_server_walks_it(tmp_path):
    """980 levels of lists still parse as JSON, but walking them in the server's own checks overflowed Python's stack
    (a RecursionError: a 500 to PUT); the shipped models nest at most 8 levels."""
    directory = write_model(tmp_path / "m")
    edit_json(directory, lambda document: document["graph"]["nodes"][1]["attrs"].update(fn="DEEP"))
    path = directory / "model.json"
    path.write_text(path.read_text().replace('"DEEP"', "[" * 980 + "0" + "]" * 980))  # json.dumps would overflow
    assert _refused(directory, ModelLimits()) == ("model 'm': model.json is nested too deeply to read; a model.json "
                                                  "nests a few levels (objects of lists of numbers)")


def test_an_attribute_of_the_wrong_type_is_named_not_a_crash(tmp_path):
    """An activation's `fn` given as a list was a TypeError (unhashable) escaping the model-file errors: a 500."""
    directory = write_model(tmp_path / "m")
    document = json.loads((directory / "model.json").read_text())
    activation = next(i for i, node in enumerate(document["graph"]["nodes"]) if node["op"] == "activation")
    edit_json(directory, lambda d: d["graph"]["nodes"][activation]["attrs"].update(fn=["relu"]))
    assert "attribute 'fn' must be one of ['relu'" in _refused(directory, ModelLimits())
