"""Requests a client can send at the limits of float32 and of the target's types: each a 4xx that names the field,
never a 500 (issue 24's cases for /explain and /v2)."""

from __future__ import annotations

import pytest
from sklearn.datasets import load_digits

DIGIT = load_digits().images[0].astype(int).tolist()
WALKTHROUGH = [1.0, 0.8, 0.2]
V2_INPUT = [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": WALKTHROUGH}]


@pytest.mark.parametrize(("model", "body", "message"), [
    ("walkthrough", {"params": {"epsilon": 3.5e38}}, "parameter 'epsilon' must be a number from 0 to 3.402823e+38 "
     "(float32's largest), got 3.5e+38"),
    ("walkthrough", {"params": {"epsilon": 1e308}}, "parameter 'epsilon' must be a number from 0 to"),
    ("digits", {"composite": "epsilon_gamma_box", "params": {"gamma": 1e308}}, "parameter 'gamma' must be a number"),
    ("digits", {"composite": "epsilon_gamma_box", "params": {"low": -1e39}},
     "parameter 'low' must be numbers within +-3.402823e+38 (float32's range), got -1e+39"),
])
def test_parameters_past_float32_are_422s_that_name_them(client, model, body, message):
    instance = [DIGIT] if model == "digits" else WALKTHROUGH
    answer = client.post(f"/explain/{model}", json={"inputs": [instance], **body})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input" and error["message"].startswith(message)


@pytest.mark.parametrize(("parameters", "message"), [
    ({"explain": True, "target": "[[[]]]"},
     "parameter 'target': a class index or label, {\"classes\": [...]}, or a list"),
    ({"explain": True, "target": 10**20}, "parameter 'target': a class index or label"),
    ({"explain": True, "target": 1.5}, "parameter 'target': a class index or label"),
    ({"explain": True, "target": {"class": 0}}, "parameter 'target': a class index or label"),
    ({"explain": True, "params": {"epsilon": 1e308}}, "parameter 'epsilon' must be a number from 0 to"),
    ({"explain": True, "target": 5}, "class index 5 is out of range"),
])
def test_v2_explain_parameters_at_their_limits_are_422s(client, parameters, message):
    answer = client.post("/v2/models/walkthrough/infer", json={"inputs": V2_INPUT, "parameters": parameters})
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["error"]


def test_a_target_given_as_json_text_still_works_on_v2(client):
    answer = client.post("/v2/models/digits/infer", json={
        "inputs": [{"name": "input", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": [DIGIT, DIGIT]}],
        "parameters": {"explain": True, "target": "[3, \"7\"]"}})
    assert answer.status_code == 200, answer.text
    target = next(o for o in answer.json()["outputs"] if o["name"] == "target")
    assert target["data"] == [3, 7]


@pytest.mark.parametrize(("body", "reason"), [
    ('{"inputs": [[1, 0.8, ' + "9" * 5000 + "]]}", "number is infinity when parsed as double at character 21"),
    ('{"inputs": ' + "[" * 5000 + "]" * 5000 + "}", "depth limit exceeded at character 1035"),
])
def test_json_too_deep_or_with_a_5000_digit_number_is_malformed_json_saying_why(client, body, reason):
    answer = client.post("/predict/walkthrough", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == {"code": "malformed_json", "message": f"the body is not valid JSON ({reason}); "
                                      "send a JSON object such as {\"inputs\": [...]}"}
