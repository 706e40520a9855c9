"""Every endpoint through an HTTP client against the app serving the shipped models."""

from __future__ import annotations

import io
import logging
import shutil
import threading

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from service import inference
from service.api.app import create_app
from service.lrp import PreparedModel
from service.render.heatmaps import heatmap
from service.settings import Settings
from service.store.format import load_model
from tests.conftest import MODELS, model_json
from tests.support.live import wait_until
from tests.support.modelfiles import edit_json, write_model
from tests.support.pictures import find

DIGIT = model_json("digits")["input"]["example"]  # 8x8, pixel values 0..16
WALKTHROUGH = [1.0, 0.8, 0.2]


def png_of_digit(pixels: list[list[int]], scale: int) -> bytes:
    """The 8x8 digit as a grey PNG enlarged `scale` times (nearest), so an area resize gives it back exactly."""
    array = np.kron(np.asarray(pixels, dtype=np.float64) * 255 / 16, np.ones((scale, scale)))
    buffer = io.BytesIO()
    Image.fromarray(np.round(array).astype(np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


# What the PNG of DIGIT holds after 8-bit quantisation, back in the model's 0..16 range.
DIGIT_AS_PNG = (np.round(np.asarray(DIGIT) * 255 / 16) * 16 / 255).tolist()


def decode_png(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    image.load()
    return image


def error_of(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return str(body["error"]["message"])


# -- health and models -------------------------------------------------------------------------------------
def test_live_and_ready(client):
    assert client.get("/health/live").json() == {"status": "live", "models": [], "failed": {}}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    shipped = ["breast-cancer", "digits", "digits-vit", "residual", "sentiment", "walkthrough"]
    assert ready.json() == {"status": "ready", "models": shipped, "failed": {}}


def test_not_ready_until_models_are_loaded():
    app = create_app(Settings(models_dir=MODELS))
    unstarted = TestClient(app)  # without `with`, start-up (model loading) does not run
    assert unstarted.get("/health/live").status_code == 200
    assert "still loading its models" in error_of(unstarted.get("/health/ready"), 503, "not_ready")
    error_of(unstarted.post("/predict/walkthrough", json={"inputs": [WALKTHROUGH]}), 503, "not_ready")


def test_start_up_loads_models_in_the_background(tmp_path):
    with TestClient(create_app(Settings(models_dir=MODELS))) as started:
        for _ in range(200):
            if started.get("/health/ready").status_code == 200:
                break
            threading.Event().wait(0.05)
        assert started.get("/health/ready").json()["models"] == ["breast-cancer", "digits", "digits-vit", "residual",
                                                                 "sentiment", "walkthrough"]


def test_models_list_inputs_classes_defaults_and_accuracy(client):
    models = {m["name"]: m for m in client.get("/models").json()}
    assert sorted(models) == ["breast-cancer", "digits", "digits-vit", "residual", "sentiment", "walkthrough"]
    assert models["digits"]["input"]["kind"] == "image" and models["digits"]["input"]["shape"] == [1, 8, 8]
    assert models["digits"]["classes"] == [str(d) for d in range(10)]
    assert models["breast-cancer"]["input"]["features"][0] == "mean radius"
    for name in ("digits", "breast-cancer", "residual"):
        assert models[name]["metrics"]["test_accuracy"] == model_json(name)["metrics"]["test_accuracy"]
    assert "epsilon_gamma_box" in models["digits"]["composites"]


def test_model_detail_lists_each_layer_with_its_rule(tmp_path):
    shutil.copytree(MODELS / "residual", tmp_path / "residual")
    edit_json(tmp_path / "residual", lambda doc: doc.update(default_composite="epsilon_plus_flat", default_params={}))
    with TestClient(create_app(Settings(models_dir=tmp_path))) as served:
        wait_until(lambda: served.get("/health/ready").status_code == 200)
        detail = served.get("/models/residual").json()
    rules = {layer["name"]: layer["rule"] for layer in detail["layers"]}
    assert rules["0"] == "flat"  # first layer under epsilon_plus_flat
    assert rules["3.conv1"] == "zplus" and rules["8"] == "epsilon"
    assert rules["3.bn1"] == "folded into 3.conv1"
    assert any(layer["op"] == "add" and layer["rule"] == "norm (epsilon)" for layer in detail["layers"])


def test_model_detail_shows_the_serving_limits_in_force(tmp_path):
    write_model(tmp_path / "own")
    edit_json(tmp_path / "own", lambda doc: doc.update(batching={"max_batch_size": 4, "cpu_threads": 2,
                                                                 "max_batch_tokens": 512}))
    write_model(tmp_path / "inherits")
    settings = Settings(models_dir=tmp_path, max_batch_size=16, max_delay_ms=7, max_queue=50, request_timeout_s=9,
                        cpu_threads=3, max_batch_tokens=2048)
    with TestClient(create_app(settings)) as served:
        wait_until(lambda: served.get("/health/ready").status_code == 200)
        assert served.get("/models/own").json()["serving"] == {
            "max_batch_size": 4, "max_batch_tokens": 512, "max_delay_ms": 7.0, "max_queue": 50, "timeout_s": 9.0,
            "cpu_threads": 2}
        assert served.get("/models/inherits").json()["serving"] == {
            "max_batch_size": 16, "max_batch_tokens": 2048, "max_delay_ms": 7.0, "max_queue": 50, "timeout_s": 9.0,
            "cpu_threads": 3}


def test_unknown_model_is_404_everywhere(client):
    for response in (client.get("/models/cat"), client.post("/predict/cat", json={"inputs": [[1]]}),
                     client.post("/explain/cat", json={"inputs": [[1]]}),
                     client.post("/explain/cat/image", files={"file": ("x.png", b"x", "image/png")})):
        assert "no model named 'cat'" in error_of(response, 404, "model_not_found")


# -- predict -----------------------------------------------------------------------------------------------
def test_predict_walkthrough(client):
    body = client.post("/predict/walkthrough", json={"inputs": [WALKTHROUGH]}).json()
    (prediction,) = body["predictions"]
    assert body["model"] == "walkthrough"
    assert prediction["logits"] == pytest.approx([1.268], abs=1e-6)
    assert prediction["probabilities"] == pytest.approx([0.7804], abs=1e-4)
    assert (prediction["class"], prediction["label"]) == (0, "positive")


def test_predict_probabilities_are_the_softmax_of_the_logits(client):
    body = client.post("/predict/digits", json={"inputs": [DIGIT, DIGIT]}).json()
    first, second = body["predictions"]
    assert first == second
    logits = np.array(first["logits"])
    np.testing.assert_allclose(first["probabilities"], np.exp(logits) / np.exp(logits).sum(), rtol=1e-5)
    assert first["class"] == int(np.argmax(logits)) and first["label"] == str(first["class"])


def test_predict_tabular_by_name_or_by_list(client):
    example = model_json("breast-cancer")["input"]["example"]
    features = model_json("breast-cancer")["input"]["features"]
    body = client.post("/predict/breast-cancer", json={"inputs": [example, [example[f] for f in features]]}).json()
    first, second = body["predictions"]
    assert first == second and first["label"] in ("malignant", "benign")


def test_uploaded_image_predicts_like_the_same_digit_as_numbers(client):
    as_numbers = client.post("/predict/digits", json={"inputs": [DIGIT_AS_PNG]}).json()["predictions"][0]
    upload = client.post("/predict/digits/image", files={"file": ("d.png", png_of_digit(DIGIT, 37), "image/png")})
    assert upload.status_code == 200, upload.text
    uploaded = upload.json()["predictions"][0]
    assert uploaded["class"] == as_numbers["class"]
    np.testing.assert_allclose(uploaded["logits"], as_numbers["logits"], rtol=1e-5, atol=1e-5)


# -- explain -----------------------------------------------------------------------------------------------
def _engine_relevance(name: str, x: torch.Tensor, target: int, composite: str, **params) -> np.ndarray:
    prepared = PreparedModel.from_graph(load_model(MODELS / name).graph)
    return prepared.explain(x, target, composite, **params).relevance.numpy()


def test_explain_json_carries_everything_for_every_instance(client):
    response = client.post("/explain/digits", json={"inputs": [DIGIT, DIGIT], "target": [3, None]})
    body = response.json()
    default = model_json("digits")
    assert body["model"] == "digits" and body["composite"] == default["default_composite"]
    assert {key: body["params"][key] for key in default["default_params"]} == default["default_params"]
    first, second = body["explanations"]
    assert first["target"] == 3 and first["label"] == "3"
    predicted = client.post("/predict/digits", json={"inputs": [DIGIT]}).json()["predictions"][0]
    assert second["target"] == predicted["class"]
    assert second["logit"] == pytest.approx(predicted["logits"][predicted["class"]], rel=1e-6)
    for item in (first, second):
        relevance = np.asarray(item["relevance"])
        assert relevance.shape == (1, 8, 8)
        assert item["relevance_sum"] == pytest.approx(relevance.sum(), rel=1e-4, abs=1e-5)
        assert item["conservation_delta"] == pytest.approx(item["logit"] - item["relevance_sum"], abs=1e-4)


def test_explain_relevance_equals_the_engine_on_the_normalised_input(client):
    image = model_json("digits")["input"]["image"]
    x = (torch.tensor(DIGIT, dtype=torch.float32) - image["mean"][0]) / image["std"][0]
    body = client.post("/explain/digits", json={"inputs": [DIGIT], "target": 5, "composite": "epsilon_plus",
                                                "params": {"epsilon": 0.1}}).json()
    expected = _engine_relevance("digits", x[None, None], 5, "epsilon_plus", epsilon=0.1)[0]
    np.testing.assert_allclose(body["explanations"][0]["relevance"], expected, rtol=1e-5, atol=1e-7)
    low, high = ((bound - image["mean"][0]) / image["std"][0] for bound in model_json("digits")["input"]["range"])
    assert body["params"] == {"epsilon": 0.1, "low": pytest.approx([low]), "high": pytest.approx([high])}


def test_explain_with_a_rule_map(client):
    body = client.post("/explain/walkthrough", json={
        "inputs": [WALKTHROUGH], "composite": {"base": "epsilon", "layers": {"2": "zplus"}},
        "params": {"epsilon": 0}}).json()
    assert body["composite"] == {"base": "epsilon", "layers": {"2": "zplus"}}
    assert len(body["explanations"][0]["relevance"]) == 3


def test_tabular_explanations_rank_the_features(client):
    example = model_json("breast-cancer")["input"]["example"]
    body = client.post("/explain/breast-cancer", json={"inputs": [example], "target": "malignant"}).json()
    item = body["explanations"][0]
    assert item["label"] == "malignant"
    ranked = item["features"]
    assert len(ranked) == 30
    magnitudes = [abs(f["relevance"]) for f in ranked]
    assert magnitudes == sorted(magnitudes, reverse=True)
    features = model_json("breast-cancer")["input"]["features"]
    by_name = {f["name"]: f for f in ranked}
    for name, relevance in zip(features, item["relevance"], strict=True):
        assert by_name[name]["relevance"] == pytest.approx(relevance)
        assert by_name[name]["value"] == example[name]


@pytest.mark.parametrize("how", ["accept", "format"])
def test_explain_png_by_accept_header_or_format(client, how):
    if how == "accept":
        response = client.post("/explain/digits", json={"inputs": [DIGIT]}, headers={"Accept": "image/png"})
    else:
        response = client.post("/explain/digits", json={"inputs": [DIGIT], "format": "png"})
    picture = np.asarray(decode_png(response).convert("RGB"))
    relevance = np.asarray(client.post("/explain/digits", json={"inputs": [DIGIT]}).json()["explanations"][0][
        "relevance"], dtype=np.float32)  # float32 as served: the exact values the PNG was drawn from
    assert find(picture, np.asarray(heatmap(relevance))) is not None  # the 256 x 256 heatmap, framed


def test_json_stays_the_default_when_json_is_preferred(client):
    response = client.post("/explain/digits", json={"inputs": [DIGIT]},
                           headers={"Accept": "application/json, image/png;q=0.5"})
    assert response.headers["content-type"] == "application/json"


def test_several_instances_give_a_grid(client):
    response = client.post("/explain/residual", json={"inputs": [DIGIT] * 4, "overlay": True},
                           headers={"Accept": "image/png"})
    width, height = decode_png(response).size
    assert width > 512 and height > 512


def test_tabular_png_is_a_bar_chart(client):
    example = model_json("breast-cancer")["input"]["example"]
    image = decode_png(client.post("/explain/breast-cancer", json={"inputs": [example], "format": "png"}))
    assert image.height > 30 * 15


def test_explain_upload_answers_a_png_at_the_upload_size(client):
    upload = png_of_digit(DIGIT, 37)
    response = client.post("/explain/digits/image", files={"file": ("d.png", upload, "image/png")},
                           data={"target": "3", "overlay": "true"})
    picture = np.asarray(decode_png(response).convert("RGB"))
    relevance = client.post("/explain/digits/image", files={"file": ("d.png", upload, "image/png")},
                            data={"target": "3", "format": "json"}).json()["explanations"][0]["relevance"]
    image = np.asarray(Image.open(io.BytesIO(upload)).convert("RGB"))
    drawn = heatmap(np.asarray(relevance, dtype=np.float32), image, overlay=True)
    assert drawn.size == (296, 296) and find(picture, np.asarray(drawn)) is not None  # at the upload's size


def test_explain_upload_as_json_equals_explaining_the_numbers(client):
    as_numbers = client.post("/explain/digits", json={"inputs": [DIGIT_AS_PNG], "target": 7}).json()[
        "explanations"][0]
    response = client.post("/explain/digits/image", files={"file": ("d.png", png_of_digit(DIGIT, 5), "image/png")},
                           data={"target": "7", "format": "json", "params": "{\"gamma\": 0.25}"})
    assert response.status_code == 200, response.text
    uploaded = response.json()["explanations"][0]
    np.testing.assert_allclose(uploaded["relevance"], as_numbers["relevance"], rtol=1e-5, atol=1e-6)


def test_upload_form_fields_take_labels_and_rule_maps(client):
    response = client.post("/explain/digits/image", files={"file": ("d.png", png_of_digit(DIGIT, 1), "image/png")},
                           data={"target": "", "composite": "{\"base\": \"epsilon\"}", "format": "json"})
    assert response.status_code == 200, response.text
    assert response.json()["composite"] == {"base": "epsilon"}


# -- errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body,status,code,message", [
    ({"inputs": [[1, 2]]}, 422, "invalid_input", "inputs[0]: expected shape [3], got [2]"),
    ({"inputs": [["a", "b", "c"]]}, 422, "invalid_input", "got values of type string"),
    ({"inputs": []}, 422, "invalid_request", "inputs: List should have at least 1 item"),
    ({}, 422, "invalid_request", "inputs: Field required"),
    ({"inputs": [WALKTHROUGH], "target": 1}, 422, "invalid_input", "class index 1 is out of range"),
    ({"inputs": [WALKTHROUGH], "composite": "best"}, 422, "invalid_input", "unknown composite 'best'; choose one"),
    ({"inputs": [WALKTHROUGH], "params": {"epsilon": -1}}, 422, "invalid_request",
     "params.epsilon: Input should be greater than or equal to 0"),
    ({"inputs": [WALKTHROUGH], "params": {"gama": 1}}, 422, "invalid_request",
     "params.gama: Extra inputs are not permitted"),
    ({"inputs": [WALKTHROUGH] * 17}, 413, "payload_too_large", "17 inputs in one request; the limit is 16"),
])
def test_bad_explain_requests_get_a_clear_4xx(client, body, status, code, message):
    assert message in error_of(client.post("/explain/walkthrough", json=body), status, code)


def test_parameters_the_engine_refuses_are_422(client):
    message = error_of(client.post("/explain/digits", json={"inputs": [DIGIT], "params": {"low": 5, "high": 1}}),
                       422, "invalid_input")
    assert "low must not exceed high" in message
    message = error_of(client.post("/explain/digits", json={"inputs": [DIGIT], "composite": "epsilon_alpha2_beta1",
                                                            "params": {"alpha": 3, "beta": 2}}), 422, "invalid_input")
    assert "fixes alpha=2" in message


def test_per_channel_bounds_of_the_wrong_length_are_422_naming_the_length(client):
    body = {"inputs": [DIGIT], "composite": "epsilon_gamma_box", "params": {"low": [0, 0, 0], "high": [1, 1, 1]}}
    message = error_of(client.post("/explain/digits", json=body), 422, "invalid_input")
    assert message == ("parameter 'low' has 3 values, but layer '0' (zbox rule) takes 1 input channel(s): "
                       "give one value, or 1")


def test_nan_and_infinity_are_refused(client):
    for literal in ("NaN", "Infinity", "-Infinity"):
        response = client.post("/predict/walkthrough", content=f'{{"inputs": [[{literal}, 1, 2]]}}',
                               headers={"content-type": "application/json"})
        assert "NaN or Infinity" in error_of(response, 422, "invalid_input")


def test_values_that_overflow_float32_are_refused_with_a_fix(client):
    response = client.post("/predict/walkthrough", json={"inputs": [[1, 0.8, 0.2], [1e300, 1, 2]]})
    assert "inputs[1]: a value is beyond float32's range" in error_of(response, 422, "invalid_input")
    for verb in ("predict", "explain"):
        response = client.post(f"/{verb}/walkthrough", json={"inputs": [[1, 0.8, 0.2], [3e38, 3e38, 3e38]]})
        message = error_of(response, 422, "invalid_input")
        assert message.startswith("inputs[1]: model 'walkthrough' overflows float32")
        assert "GET /models/walkthrough" in message


def test_bytes_that_are_not_json_are_400_and_well_formed_but_wrong_json_is_422(client):
    response = client.post("/predict/walkthrough", content='{"inputs": [[1, 2,', headers={
        "content-type": "application/json"})
    assert error_of(response, 400, "malformed_json").startswith("the body is not valid JSON (Expecting value at "
                                                                "character 18)")
    response = client.post("/predict/walkthrough", content='[1, 2]', headers={"content-type": "application/json"})
    assert "Input should be a valid dictionary" in error_of(response, 422, "invalid_request")


@pytest.mark.parametrize("path,content_type,takes", [
    ("/predict/walkthrough", "text/plain", "application/json"),
    ("/explain/walkthrough", "application/x-www-form-urlencoded", "application/json"),
    ("/explain/walkthrough", None, "application/json"),
    ("/explain/digits/image", "application/json", "multipart/form-data"),
    ("/predict/digits/image", "application/x-www-form-urlencoded", "multipart/form-data"),
])
def test_a_body_of_another_media_type_is_415_naming_the_one_the_route_takes(client, path, content_type, takes):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(path, content=b'{"inputs": [[1, 0.8, 0.2]]}', headers=headers)
    message = error_of(response, 415, "unsupported_media_type")
    assert message.startswith(f"POST {path} takes {takes}, not {content_type or 'a body without Content-Type'}")
    assert message.endswith(f"send Content-Type: {takes}")


def test_json_with_a_structured_suffix_is_json(client):
    response = client.post("/predict/walkthrough", content=b'{"inputs": [[1, 0.8, 0.2]]}',
                           headers={"content-type": "application/vnd.api+json; charset=utf-8"})
    assert response.status_code == 200


def test_a_broken_multipart_body_is_400(client):
    bounded = "multipart/form-data; boundary=xyz"
    for body, content_type in ((b"garbage", bounded), (b"--xyz\r\nBadHeaderLine\r\n\r\nabc\r\n--xyz--\r\n", bounded),
                               (b"garbage", "multipart/form-data")):
        response = client.post("/explain/digits/image", content=body, headers={"content-type": content_type})
        assert "could not be parsed as multipart/form-data" in error_of(response, 400, "malformed_body")


def test_an_image_over_the_pixel_limit_is_413_before_it_is_decoded(client):
    buffer = io.BytesIO()
    Image.new("L", (2100, 2000)).save(buffer, format="PNG")  # 4.2 million pixels, over the client's 4 million
    response = client.post("/explain/digits/image", files={"file": ("big.png", buffer.getvalue(), "image/png")})
    assert error_of(response, 413, "payload_too_large") == (
        "file: the image has 2100x2000 pixels; the limit is 4000000 pixels (LRP_MAX_IMAGE_PIXELS)")


def test_pixels_outside_the_range_are_refused(client):
    bad = [[17] * 8, *DIGIT[1:]]
    assert "pixel values must lie in the model's input range [0, 16]" in error_of(
        client.post("/explain/digits", json={"inputs": [bad]}), 422, "invalid_input")


def test_undecodable_and_misdirected_uploads_are_refused(client):
    message = error_of(client.post("/explain/digits/image", files={"file": ("x.png", b"not a png", "image/png")}),
                       422, "invalid_image")
    assert "could not decode the image; send a PNG or JPEG file" in message
    message = error_of(client.post("/predict/breast-cancer/image", files={"file": ("x.png", b"x", "image/png")}),
                       422, "invalid_image")
    assert "takes tabular input, not images; POST JSON" in message
    assert "params must be a JSON object" in error_of(client.post(
        "/explain/digits/image", files={"file": ("d.png", png_of_digit(DIGIT, 1), "image/png")},
        data={"params": "{\"epsilon\": -2}"}), 422, "invalid_input")
    big = png_of_digit(DIGIT, 1) + b"\0" * 200_001
    assert "LRP_MAX_UPLOAD_BYTES" in error_of(client.post(
        "/explain/digits/image", files={"file": ("d.png", big, "image/png")}), 413, "payload_too_large")
    assert "file: Field required" in error_of(client.post(
        "/explain/digits/image", data={"target": "1"}, files={"other": ("x.txt", b"x", "text/plain")}),
        422, "invalid_request")


def test_unknown_routes_and_methods_use_the_error_body(client):
    assert "no route GET /nowhere" in error_of(client.get("/nowhere"), 404, "not_found")
    error_of(client.get("/predict/digits"), 405, "method_not_allowed")


def test_a_server_fault_is_a_500_without_internals_and_is_logged(registry, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(registry.get("walkthrough").prepared, "explain_resolved", broken)
    with TestClient(create_app(Settings(models_dir=MODELS), registry), raise_server_exceptions=False) as faulty, \
            caplog.at_level(logging.ERROR, logger="service"):
        response = faulty.post("/explain/walkthrough", json={"inputs": [WALKTHROUGH]})
        message = error_of(response, 500, "internal")
        assert "secret" not in response.text and "Traceback" not in response.text
        assert "details are in the server log" in message
        assert faulty.post("/predict/walkthrough", json={"inputs": [WALKTHROUGH]}).status_code == 200
    assert "secret internal detail" in caplog.text


def test_inference_runs_off_the_event_loop(registry, monkeypatch):
    live_answered = threading.Event()
    real_run = inference.run_batch

    def waits_for_live(*args, **kwargs):
        assert live_answered.wait(timeout=10), "the event loop was blocked while explaining"
        return real_run(*args, **kwargs)

    monkeypatch.setattr(inference, "run_batch", waits_for_live)
    with TestClient(create_app(Settings(models_dir=MODELS), registry)) as concurrent:
        results: dict[str, int] = {}
        worker = threading.Thread(target=lambda: results.update(
            explain=concurrent.post("/explain/walkthrough", json={"inputs": [WALKTHROUGH]}).status_code))
        worker.start()
        assert concurrent.get("/health/live").status_code == 200
        live_answered.set()
        worker.join(timeout=20)
    assert results == {"explain": 200}


@pytest.mark.parametrize("target", ["--5", "9" * 5000, "-"])
def test_a_form_target_that_is_neither_an_index_nor_a_label_is_422(client, target):
    response = client.post("/explain/digits/image", files={"file": ("d.png", png_of_digit(DIGIT, 1), "image/png")},
                           data={"target": target})
    assert "unknown class label" in error_of(response, 422, "invalid_input")
