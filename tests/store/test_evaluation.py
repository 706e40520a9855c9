"""A model's faithfulness on its model.json's held-out examples: the figures GET /models/{name} shows (measured at
load, and the comparison that chose the default) equal what /explain's "evaluate" gives for the same examples, and
examples the model cannot take are refused."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
import torch

from service.__main__ import main
from service.errors import ModelFileError
from service.faithfulness import Subject
from service.faithfulness import examples as evaluation
from service.loader import load_entry
from service.lrp import LRPParams
from service.serving.config import ServingConfig
from service.settings import Settings
from service.store.format import load_model
from tests.conftest import model_json
from tests.support.modelfiles import edit_json, tiny_cnn, write_model


def _served_aopcs(client, model: str, examples: list, **method: Any) -> tuple[float, float, float]:
    found = []
    for start in range(0, len(examples), 10):
        answer = client.post(f"/explain/{model}", json={"inputs": examples[start:start + 10], **method,
                                                        "evaluate": {"steps": 10, "random_orders": 3}})
        assert answer.status_code == 200, answer.text
        found += [(e["faithfulness"]["aopc_morf"], e["faithfulness"]["aopc_lerf"], e["faithfulness"]["aopc_random"])
                  for e in answer.json()["explanations"]]
    morf, lerf, random = (float(np.mean(column)) for column in zip(*found, strict=True))
    return morf, lerf, random


@pytest.mark.parametrize("model", ["digits", "digits-vit", "breast-cancer", "sentiment"])
def test_the_load_time_figures_equal_explain_with_evaluate(client, model):
    document = model_json(model)
    shown = client.get(f"/models/{model}").json()["faithfulness"]
    default = shown[document["default_composite"]]
    morf, lerf, random = _served_aopcs(client, model, document["evaluation"]["examples"])
    assert default["aopc_morf"] == pytest.approx(morf, abs=2e-4)
    assert default["aopc_lerf"] == pytest.approx(lerf, abs=2e-4)
    assert default["aopc_random"] == pytest.approx(random, abs=2e-4)
    assert default["aopc_morf"] > shown["random relevance"]["aopc_morf"]
    assert ("input x gradient" in shown) == (document["input"]["kind"] != "text")


def test_a_model_without_examples_shows_none(client):
    assert client.get("/models/walkthrough").json()["faithfulness"] is None


def test_examples_the_model_cannot_take_are_refused(tmp_path):
    directory = write_model(tmp_path / "broken")
    edit_json(directory, lambda doc: doc.update(evaluation={"examples": [[1.0, 2.0]]}))
    with pytest.raises(ModelFileError, match=r"model 'broken': model\.json: evaluation\.examples: inputs\[0\]: "
                       r"expected shape \[1, 4, 4\]"):
        load_entry(directory, torch.device("cpu"), Settings(models_dir=tmp_path))


def _request_params(document: dict, compared: dict) -> dict:
    """The parameters that ask /explain for the compared composite: a request naming the model's default composite
    starts from the model's default parameters, so a comparison entry without parameters (the composite's own
    defaults) sets those keys back to the engine's defaults."""
    if compared["composite"] != document["default_composite"] or compared["params"]:
        return compared["params"]
    own = LRPParams()
    return {key: getattr(own, key) for key in document["default_params"]}


COMPARED = ["digits", "residual", "breast-cancer", "digits-vit", "sentiment"]


@pytest.mark.parametrize("model", COMPARED)
def test_the_comparison_that_chose_the_default_equals_explain_with_each_composite(client, model):
    document = model_json(model)
    shown = client.get(f"/models/{model}").json()["composite_comparison"]
    assert shown == document["evaluation"]["comparison"]
    for compared in shown:
        morf, lerf, random = _served_aopcs(client, model, document["evaluation"]["examples"],
                                           composite=compared["composite"],
                                           params=_request_params(document, compared))
        assert compared["aopc_morf"] == pytest.approx(morf, abs=2e-4), compared
        assert compared["aopc_lerf"] == pytest.approx(lerf, abs=2e-4), compared
        assert compared["aopc_random"] == pytest.approx(random, abs=2e-4), compared


@pytest.mark.parametrize("model", COMPARED)
def test_each_shipped_default_is_the_most_faithful_composite_compared(model):
    document = model_json(model)
    comparison = document["evaluation"]["comparison"]
    chosen = next(c for c in comparison if (c["composite"], c["params"]) ==
                  (document["default_composite"], document["default_params"]))
    assert chosen["aopc_morf"] == max(compared["aopc_morf"] for compared in comparison)
    measured = [(c["composite"], c["params"]) for c in comparison]
    assert ("epsilon", {"epsilon": 0.0}) in measured  # LRP-0
    assert (("attnlrp", {}) in measured) == (model in ("digits-vit", "sentiment"))  # attention composites
    assert len(measured) == len({json.dumps(m) for m in measured})


def test_compare_skips_composites_the_model_cannot_take_and_ties_keep_the_designed_default(tmp_path):
    """A tensor model without an input range cannot take zbox; on a ReLU network the epsilon rule at its default
    epsilon and LRP-0 give the same AOPCs, and a tie keeps the designed default first, then LRP-0."""
    examples = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(1)).tolist()
    lrp_0: tuple[str, dict] = ("epsilon", {"epsilon": 0.0})
    epsilon: tuple[str, dict] = ("epsilon", {})
    for designed, first in (("epsilon", epsilon), ("zplus", lrp_0)):
        directory = write_model(tmp_path / designed, tiny_cnn(), default_composite=designed,
                                evaluation={"examples": examples, "steps": 4, "random_orders": 1})
        loaded = load_model(directory)
        serving = ServingConfig.resolve(Settings(models_dir=tmp_path))
        compared = evaluation.compare(loaded.name, loaded.spec, Subject(loaded.prepared, loaded.spec.input,
                                                                        loaded.text, serving))
        found = {(c.composite, json.dumps(c.params)): (place, c.aopc_morf) for place, c in enumerate(compared)}
        assert not {"epsilon_gamma_box", "attnlrp", "cp_lrp"} & {c.composite for c in compared}
        assert [c.aopc_morf for c in compared] == sorted((c.aopc_morf for c in compared), reverse=True)
        (lrp_0_place, lrp_0_morf), (epsilon_place, epsilon_morf) = (
            found[name, json.dumps(params)] for name, params in (lrp_0, epsilon))
        assert lrp_0_morf == epsilon_morf
        assert (lrp_0_place < epsilon_place) == (first == lrp_0)


def test_examples_that_ask_for_more_runs_than_the_limit_are_refused(tmp_path):
    directory = write_model(tmp_path / "greedy")
    examples = torch.zeros(4, 1, 4, 4).tolist()
    edit_json(directory, lambda doc: doc.update(evaluation={"examples": examples, "steps": 10, "random_orders": 3}))
    with pytest.raises(ModelFileError, match=re.escape(
            "model 'greedy': model.json: evaluation asks the model to run 204 inputs per method (4 examples x (1 + 10 "
            "steps x (2 + 3 random orders))); the limit is 200 (LRP_MAX_EVALUATION_COPIES)")):
        load_entry(directory, torch.device("cpu"), Settings(models_dir=tmp_path, max_evaluation_copies=200))
    entry = load_entry(directory, torch.device("cpu"), Settings(models_dir=tmp_path, max_evaluation_copies=204))
    assert entry.faithfulness is not None


def test_the_command_prints_the_comparison_and_writes_the_best_only_when_asked(tmp_path, capsys):
    examples = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(2)).tolist()
    directory = write_model(tmp_path / "mine", tiny_cnn(), default_composite="zplus",
                            evaluation={"examples": examples, "steps": 4, "random_orders": 1})
    before = (directory / "model.json").read_bytes()
    assert main(["choose-default", str(directory)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert (directory / "model.json").read_bytes() == before
    rows = [line.split(" | ") for line in printed[1:-1]]
    morfs = [float(row[2]) for row in rows]
    assert morfs == sorted(morfs, reverse=True) and len(rows) == len({(row[0], row[1]) for row in rows})
    assert printed[-1].endswith("the default was zplus {}; would write (pass --write) model.json")
    assert main(["choose-default", str(directory), "--write"]) == 0
    written = json.loads((directory / "model.json").read_text())
    assert (written["default_composite"], json.dumps(written["default_params"])) == (rows[0][0], rows[0][1])
    assert [compared["aopc_morf"] for compared in written["evaluation"]["comparison"]] == morfs
    entry = load_entry(directory, torch.device("cpu"), Settings(models_dir=tmp_path))  # measured at load, anew
    assert entry.faithfulness is not None
    assert entry.faithfulness[written["default_composite"]]["aopc_morf"] == pytest.approx(morfs[0], abs=1e-4)


def test_the_command_says_what_a_model_without_examples_needs(tmp_path, capsys):
    directory = write_model(tmp_path / "bare")
    assert main(["choose-default", str(directory), "--write"]) == 1
    assert capsys.readouterr().err.strip() == (
        "choose-default: model 'bare': model.json has no evaluation examples to measure on: add \"evaluation\": "
        "{\"examples\": [...]} (held-out instances as /predict takes them)")
