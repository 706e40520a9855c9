"""The Open Inference Protocol (KServe V2, REST): metadata, health, infer in tensor JSON (flat or nested) and in the
binary tensor extension, explanations by request parameters, errors as {"error": "..."}; the values equal /predict
and /explain for the same inputs."""

from __future__ import annotations

import json
import logging
import struct

import jsonschema
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits

from service import inference
from service.api.app import create_app
from service.api.v2.tensors import HEADER_LENGTH
from service.settings import Settings
from tests.conftest import MODELS
from tests.support.prometheus import labels, parse

DIGITS = load_digits().images[:3].astype(int).tolist()
TEXTS = ["a wonderful film", "the plot was a terrible mess, not good at all"]


def _infer(client, model: str, data, shape, datatype="FP32", **extra):
    body = {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}], **extra}
    return client.post(f"/v2/models/{model}/infer", json=body)


def _output(answer: dict, name: str) -> np.ndarray:
    found = next(o for o in answer["outputs"] if o["name"] == name)
    return np.asarray(found["data"]).reshape(found["shape"])


def test_server_and_model_metadata_and_health(client):
    assert client.get("/v2").json()["name"] == "lrp-explanation-service"
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    digits = client.get("/v2/models/digits").json()
    assert digits["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert {o["name"]: o["shape"] for o in digits["outputs"]} == {
        "logits": [-1, 10], "probabilities": [-1, 10], "relevance": [-1, 1, 8, 8], "target": [-1]}
    assert digits["versions"] == [client.get("/models/digits").json()["version"]]
    assert client.get("/v2/models/sentiment").json()["inputs"][0] == {"name": "input", "datatype": "BYTES",
                                                                      "shape": [-1]}
    assert client.get("/v2/models/digits/ready").json() == {"name": "digits", "ready": True}
    missing = client.get("/v2/models/nope/ready")
    assert missing.status_code == 404 and "no model named 'nope'" in missing.json()["error"]


@pytest.mark.parametrize("nested", [True, False])
def test_infer_equals_predict_for_the_same_instances(client, nested):
    data = DIGITS if nested else np.asarray(DIGITS).reshape(-1).tolist()
    answer = _infer(client, "digits", data, [3, 1, 8, 8], id="req-7")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == "digits" and body["id"] == "req-7"
    predicted = client.post("/predict/digits", json={"inputs": DIGITS}).json()["predictions"]
    np.testing.assert_allclose(_output(body, "logits"), [p["logits"] for p in predicted], rtol=1e-6)
    np.testing.assert_allclose(_output(body, "probabilities"), [p["probabilities"] for p in predicted], rtol=1e-5)
    assert [o["datatype"] for o in body["outputs"]] == ["FP32", "FP32"]


def test_tabular_rows_come_in_feature_order(client):
    example = client.get("/models/breast-cancer").json()["input"]["example"]
    answer = _infer(client, "breast-cancer", [list(example.values())], [1, 30]).json()
    predicted = client.post("/predict/breast-cancer", json={"inputs": [example]}).json()["predictions"][0]
    assert _output(answer, "logits")[0].tolist() == pytest.approx(predicted["logits"], rel=1e-6)


@pytest.mark.parametrize("params", [{"gamma": 0.5}, json.dumps({"gamma": 0.5})])
def test_explain_parameters_add_relevance_and_target_equal_to_explain(client, params):
    answer = _infer(client, "digits", DIGITS, [3, 1, 8, 8], parameters={
        "explain": True, "composite": "epsilon_gamma_box", "target": 4, "params": params})
    assert answer.status_code == 200, answer.text
    explained = client.post("/explain/digits", json={"inputs": DIGITS, "composite": "epsilon_gamma_box",
                                                     "target": 4, "params": {"gamma": 0.5}}).json()["explanations"]
    relevance = _output(answer.json(), "relevance")
    assert relevance.shape == (3, 1, 8, 8)
    np.testing.assert_allclose(relevance, np.asarray([e["relevance"] for e in explained]), rtol=1e-5, atol=1e-6)
    assert _output(answer.json(), "target").tolist() == [4, 4, 4]
    assert _output(answer.json(), "logits")[:, 4].tolist() == pytest.approx([e["logit"] for e in explained])


def test_a_rule_map_and_per_instance_targets_travel_as_json_text(client):
    composite = {"base": "epsilon", "layers": {"0": "gamma"}}
    answer = _infer(client, "digits", DIGITS, [3, 1, 8, 8], parameters={
        "explain": True, "composite": json.dumps(composite), "target": json.dumps([1, None, "7"])})
    assert answer.status_code == 200, answer.text
    explained = client.post("/explain/digits", json={"inputs": DIGITS, "composite": composite,
                                                     "target": [1, None, "7"]}).json()["explanations"]
    assert _output(answer.json(), "target").tolist() == [e["target"] for e in explained]


def test_texts_are_bytes_and_their_relevance_is_zero_past_their_tokens(client):
    answer = _infer(client, "sentiment", TEXTS, [2], datatype="BYTES", parameters={"explain": True})
    assert answer.status_code == 200, answer.text
    explained = client.post("/explain/sentiment", json={"inputs": TEXTS}).json()["explanations"]
    relevance = _output(answer.json(), "relevance")
    lengths = [len(e["relevance"]) for e in explained]
    assert relevance.shape == (2, max(lengths))
    for row, one, length in zip(relevance, explained, lengths, strict=True):
        assert row[:length].tolist() == pytest.approx(one["relevance"], rel=1e-5, abs=1e-7)
        assert not row[length:].any()


def test_outputs_can_be_chosen(client):
    answer = _infer(client, "digits", DIGITS, [3, 1, 8, 8], outputs=[{"name": "probabilities"}]).json()
    assert [o["name"] for o in answer["outputs"]] == ["probabilities"]
    refused = _infer(client, "digits", DIGITS, [3, 1, 8, 8], outputs=[{"name": "saliency"}])
    assert refused.status_code == 400
    assert "unknown output(s) ['saliency']" in refused.json()["error"]


def test_every_output_the_metadata_lists_can_be_asked_for_and_relevance_means_explain(client):
    """A client that asks for every output of GET /v2/models/{model} (as tritonclient code often does) gets them:
    asking for relevance or target explains, as explain: true would."""
    listed = [o["name"] for o in client.get("/v2/models/digits").json()["outputs"]]
    asked = _infer(client, "digits", DIGITS, [3, 1, 8, 8], outputs=[{"name": name} for name in listed])
    assert asked.status_code == 200, asked.text
    assert [o["name"] for o in asked.json()["outputs"]] == listed
    explained = _infer(client, "digits", DIGITS, [3, 1, 8, 8], parameters={"explain": True}).json()
    for name in listed:
        np.testing.assert_array_equal(_output(asked.json(), name), _output(explained, name))


def _binary_request(values: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """A binary-extension request written by hand: the JSON header, then the FP32 bytes."""
    raw = values.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "input", "shape": list(values.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    return header + raw, {HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"}


def test_the_binary_tensor_extension_both_ways(client):
    values = np.asarray(DIGITS, dtype=np.float32).reshape(3, 1, 8, 8)
    body, headers = _binary_request(values)
    answer = client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    length = int(answer.headers[HEADER_LENGTH])
    header = json.loads(answer.content[:length])
    (output,) = header["outputs"]
    assert output["parameters"]["binary_data_size"] == 3 * 10 * 4 and "data" not in output
    logits = np.frombuffer(answer.content[length:], dtype="<f4").reshape(3, 10)
    expected = [p["logits"] for p in client.post("/predict/digits", json={"inputs": DIGITS}).json()["predictions"]]
    np.testing.assert_allclose(logits, expected, rtol=1e-6)


def test_binary_text_elements_carry_their_lengths(client):
    raw = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in TEXTS)
    header = json.dumps({"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    answer = client.post("/v2/models/sentiment/infer", content=header + raw, headers={HEADER_LENGTH: str(len(header))})
    assert answer.status_code == 200, answer.text
    predicted = client.post("/predict/sentiment", json={"inputs": TEXTS}).json()["predictions"]
    np.testing.assert_allclose(_output(answer.json(), "logits"), [p["logits"] for p in predicted], rtol=1e-6)


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{not json", 400, "the request is not valid JSON"),
    (b'{"inputs": 3}', 400, '"inputs": [{"name", "shape", "datatype", "data"}]'),
    (b'{"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": []}]}', 400,
     "data must hold 64 values"),
    (json.dumps({"inputs": [{"name": "pixels", "shape": [3, 1, 8, 8], "datatype": "FP32", "data": DIGITS}]}).encode(),
     400, "takes one input tensor named 'input'"),
    (json.dumps({"inputs": [{"name": "input", "shape": [3, 64], "datatype": "FP32", "data": DIGITS}]}).encode(),
     400, "must be numbers of shape [n, 1, 8, 8], got FP32 [3, 64]"),
    (json.dumps({"inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP8", "data": DIGITS}]}).encode(),
     400, "datatype 'FP8' is not one of"),
    (json.dumps({"inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP32", "data": DIGITS}],
                 "parameters": {"explain": "yes"}}).encode(), 400, "parameter 'explain' must be true or false"),
    (json.dumps({"inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP32", "data": DIGITS}],
                 "parameters": {"explain": True, "composite": "nonsense"}}).encode(), 422, "unknown composite"),
    (json.dumps({"inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP32", "data": DIGITS}],
                 "parameters": {"explain": True, "params": {"gamma": -1}}}).encode(), 422,
     "parameter 'params': gamma: Input should be greater than or equal to 0"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                             "data": [[[[99] * 8] * 8]]}]}).encode(), 422, "pixel values must lie in"),
])
def test_errors_are_the_protocol_s_error_objects(client, body, status, message):
    answer = client.post("/v2/models/digits/infer", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"} and message in answer.json()["error"]


def test_infer_requests_are_counted_by_model_and_status(client):
    before = parse(client.get("/metrics").text).get(("lrp_requests_total", labels(model="walkthrough", verb="infer",
                                                                                  status="200")), 0)
    assert _infer(client, "walkthrough", [[1.0, 0.8, 0.2]], [1, 3]).status_code == 200
    found = parse(client.get("/metrics").text)
    assert found["lrp_requests_total", labels(model="walkthrough", verb="infer", status="200")] == before + 1


def test_too_many_instances_is_a_413_in_the_protocol_s_form(client):
    answer = _infer(client, "walkthrough", [[1.0, 0.8, 0.2]] * 17, [17, 3])
    assert answer.status_code == 413 and "limit is 16" in answer.json()["error"]


def test_the_served_version_answers_under_its_version_path_and_others_are_404(client):
    version = client.get("/models/digits").json()["version"]
    base = f"/v2/models/digits/versions/{version}"
    assert client.get(base).json() == client.get("/v2/models/digits").json()
    assert client.get(f"{base}/ready").json() == {"name": "digits", "ready": True}
    body = {"inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP32", "data": DIGITS}]}
    before = parse(client.get("/metrics").text).get(("lrp_requests_total", labels(model="digits", verb="infer",
                                                                                  status="200")), 0)
    answer = client.post(f"{base}/infer", json=body)
    assert answer.status_code == 200 and answer.json()["model_version"] == version
    predicted = client.post("/predict/digits", json={"inputs": DIGITS}).json()["predictions"]
    np.testing.assert_allclose(_output(answer.json(), "logits"), [p["logits"] for p in predicted], rtol=1e-6)
    found = parse(client.get("/metrics").text)
    assert found["lrp_requests_total", labels(model="digits", verb="infer", status="200")] == before + 1
    for path in ("/v2/models/digits/versions/1", "/v2/models/digits/versions/1/ready"):
        missing = client.get(path)
        assert missing.status_code == 404
        assert missing.json() == {"error": f"model 'digits' has no version '1'; it serves version '{version}' "
                                           "(GET /v2/models/digits)"}
    assert client.post("/v2/models/digits/versions/1/infer", json=body).status_code == 404
    assert client.get(f"/v2/models/nope/versions/{version}").status_code == 404


def test_unknown_v2_paths_and_methods_answer_in_the_protocol_s_form(client):
    missing = client.get("/v2/nowhere")
    assert (missing.status_code, missing.json()) == (404, {"error": "no route GET /v2/nowhere; see /docs"})
    wrong = client.get("/v2/models/digits/infer")
    assert (wrong.status_code, wrong.json(), wrong.headers["allow"]) == (405, {"error": "Method Not Allowed"}, "POST")
    other = client.get("/nowhere")  # outside /v2 the service's own error body
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("body", "message"), [
    ({"inputs": [[None, None]]}, "inputs.0: Input should be a valid dictionary"),
    ({"inputs": [{"name": "input", "shape": [4294967296, 4294967296], "datatype": "FP32", "data": []}]},
     "data must hold 18446744073709551616 values"),
    ({"inputs": [{"name": "input", "shape": [0, 1, 8, 8], "datatype": "FP32", "data": []}]},
     "input 'input' holds no instances (shape [0, 1, 8, 8])"),
    ({"inputs": [{"name": "input", "shape": [-1, 64], "datatype": "FP32", "data": []}]},
     "inputs.0.shape.0: Input should be greater than or equal to 0"),
    ({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0] * 64}], "parameters": []},
     "parameters: Input should be a valid dictionary"),
    ({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                  "parameters": {"binary_data_size": -5}}]}, "binary_data_size -5 runs past the body's binary part"),
])
def test_malformed_tensors_are_400s_that_name_the_problem(client, body, message):
    answer = client.post("/v2/models/digits/infer", json=body)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"} and message in answer.json()["error"]


def test_an_output_the_request_cannot_have_is_refused_before_the_model_runs(client, monkeypatch):
    monkeypatch.setattr(inference, "answer", lambda *args: pytest.fail("the job was run"))
    refused = _infer(client, "walkthrough", [[1.0, 0.8, 0.2]], [1, 3], outputs=[{"name": "saliency"}])
    assert refused.status_code == 400 and "unknown output(s) ['saliency']" in refused.json()["error"]


def test_a_fault_in_a_v2_route_is_a_bare_500_in_the_protocol_s_form_and_is_logged(registry, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(registry.get("walkthrough").prepared, "predict", broken)
    with TestClient(create_app(Settings(models_dir=MODELS), registry), raise_server_exceptions=False) as faulty, \
            caplog.at_level(logging.ERROR, logger="service"):
        answer = _infer(faulty, "walkthrough", [[1.0, 0.8, 0.2]], [1, 3])
    assert answer.status_code == 500 and set(answer.json()) == {"error"}
    assert "secret" not in answer.text and "server log" in answer.json()["error"]
    assert "secret internal detail" in caplog.text


def test_the_infer_body_is_documented_from_its_model_and_the_document_accepts_what_the_route_takes(client):
    document = client.get("/openapi.json").json()
    content = document["paths"]["/v2/models/{model}/infer"]["post"]["requestBody"]["content"]
    reference = content["application/json"]["schema"]["$ref"]
    assert reference == "#/components/schemas/InferRequest" and "application/octet-stream" in content
    schema = {**document["components"]["schemas"]["InferRequest"], "components": document["components"]}
    body = {"id": "7", "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 0.8, 0.2]}],
            "parameters": {"explain": True}, "outputs": [{"name": "relevance"}]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
    bad = {**body, "inputs": [{**body["inputs"][0], "datatype": "FP8"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema, cls=jsonschema.Draft202012Validator)
    answer = client.post("/v2/models/walkthrough/infer", json=body)
    assert answer.status_code == 200 and [o["name"] for o in answer.json()["outputs"]] == ["relevance"]
    assert answer.json()["id"] == "7"
    assert client.post("/v2/models/walkthrough/infer", json=bad).status_code == 400
