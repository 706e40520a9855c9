"""A model's faithfulness measured at load on its model.json's held-out examples: the figures GET /models/{name}
shows equal what /explain's "evaluate" gives for the same examples, and examples the model cannot take are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.errors import ModelFileError
from service.settings import Settings
from service.store.registry import load_entry
from tests.conftest import model_json
from tests.modelfiles import edit_json, write_model


def _served_aopcs(client, model: str, examples: list) -> tuple[float, float, float]:
    found = []
    for start in range(0, len(examples), 10):
        answer = client.post(f"/explain/{model}", json={"inputs": examples[start:start + 10],
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
