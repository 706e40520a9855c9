"""Every route's live answers match what the published OpenAPI document says: a documented status, a documented
content type, and (JSON) a body valid against the response schema. A route nobody calls here fails the test."""

from __future__ import annotations

import io
from typing import Any

import jsonschema
import pytest
from PIL import Image

from tests.conftest import model_json

JSON = "application/json"
DIGIT = [[0, 0, 5, 13, 9, 1, 0, 0]] * 8
PATIENT = model_json("breast-cancer")["input"]["example"]
SERVED = "{served}"  # stands for the version the model of the path serves (its sha256, read from GET /models/{model})


def png_upload(width: int = 16, height: int = 16) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="PNG")
    return {"file": ("digit.png", buffer.getvalue(), "image/png")}


# (method, path template, concrete path, request keyword arguments): successes and documented failures
CALLS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("get", "/health/live", "/health/live", {}),
    ("get", "/health/ready", "/health/ready", {}),
    ("get", "/metrics", "/metrics", {}),
    ("get", "/models", "/models", {}),
    ("get", "/models/{model}", "/models/digits", {}),
    ("get", "/models/{model}", "/models/cat", {}),
    ("post", "/predict/{model}", "/predict/walkthrough", {"json": {"inputs": [[1, 0.8, 0.2]]}}),
    ("post", "/predict/{model}", "/predict/breast-cancer", {"json": {"inputs": [PATIENT]}}),
    ("post", "/predict/{model}", "/predict/walkthrough", {"json": {"inputs": [[1, 0.8]]}}),
    ("post", "/predict/{model}", "/predict/walkthrough", {"json": {"inputs": [[1, 0.8, 0.2]] * 17}}),
    ("post", "/explain/{model}", "/explain/digits", {"json": {"inputs": [DIGIT, DIGIT], "target": [3, None]}}),
    ("post", "/explain/{model}", "/explain/breast-cancer", {"json": {"inputs": [PATIENT]}}),
    ("post", "/explain/{model}", "/explain/digits", {"json": {"inputs": [DIGIT], "format": "png"}}),
    ("post", "/explain/{model}", "/explain/digits", {"json": {"inputs": [DIGIT], "composite": "best"}}),
    ("post", "/explain/{model}", "/explain/cat", {"json": {"inputs": [DIGIT]}}),
    ("post", "/predict/{model}/image", "/predict/digits/image", {"files": png_upload()}),
    ("post", "/predict/{model}/image", "/predict/walkthrough/image", {"files": png_upload()}),
    ("post", "/explain/{model}/image", "/explain/digits/image", {"files": png_upload()}),
    ("post", "/explain/{model}/image", "/explain/digits/image", {"files": png_upload(), "data": {"format": "json"}}),
    ("post", "/predict/{model}", "/predict/walkthrough", {"content": b"{", "headers": {"content-type": JSON}}),
    ("post", "/explain/{model}", "/explain/walkthrough", {"content": b"{}", "headers": {"content-type": "text/plain"}}),
    ("post", "/explain/{model}/image", "/explain/digits/image", {"json": {"inputs": []}}),
    ("post", "/explain/{model}/image", "/explain/digits/image",
     {"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=x"}}),
    ("post", "/predict/{model}/image", "/predict/digits/image", {"files": png_upload(2100, 2000)}),
    ("get", "/v2", "/v2", {}),
    ("get", "/v2/health/live", "/v2/health/live", {}),
    ("get", "/v2/health/ready", "/v2/health/ready", {}),
    ("get", "/v2/models/{model}", "/v2/models/digits", {}),
    ("get", "/v2/models/{model}", "/v2/models/cat", {}),
    ("get", "/v2/models/{model}/ready", "/v2/models/digits/ready", {}),
    ("post", "/v2/models/{model}/infer", "/v2/models/walkthrough/infer", {"json": {"inputs": [
        {"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 0.8, 0.2]}]}}),
    ("post", "/v2/models/{model}/infer", "/v2/models/walkthrough/infer", {"json": {"inputs": [
        {"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 0.8, 0.2]}], "parameters": {
        "explain": True, "composite": "nonsense"}}}),
    ("post", "/v2/models/{model}/infer", "/v2/models/walkthrough/infer", {"json": {"inputs": []}}),
    ("post", "/v2/models/{model}/infer", "/v2/models/cat/infer", {"json": {"inputs": []}}),
    ("get", "/v2/models/{model}/versions/{version}", f"/v2/models/digits/versions/{SERVED}", {}),
    ("get", "/v2/models/{model}/versions/{version}", "/v2/models/digits/versions/1", {}),
    ("get", "/v2/models/{model}/versions/{version}/ready", f"/v2/models/digits/versions/{SERVED}/ready", {}),
    ("post", "/v2/models/{model}/versions/{version}/infer", f"/v2/models/walkthrough/versions/{SERVED}/infer",
     {"json": {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 0.8, 0.2]}]}}),
    ("post", "/v2/models/{model}/versions/{version}/infer", "/v2/models/walkthrough/versions/1/infer",
     {"json": {"inputs": []}}),
]


@pytest.fixture(scope="module")
def document(client) -> dict[str, Any]:
    return client.get("/openapi.json").json()


@pytest.mark.parametrize(("method", "template", "path", "request_args"), CALLS,
                         ids=[f"{m.upper()} {p} {i}" for i, (m, _, p, _) in enumerate(CALLS)])
def test_the_answer_is_documented_and_matches_its_schema(client, document, method, template, path, request_args):
    if SERVED in path:
        path = path.replace(SERVED, client.get(f"/models/{path.split('/')[3]}").json()["version"])
    response = client.request(method.upper(), path, **request_args)
    documented = document["paths"][template][method]["responses"]
    assert str(response.status_code) in documented, f"{response.status_code} is not documented for {template}"
    content = documented[str(response.status_code)].get("content", {})
    media = response.headers["content-type"].split(";")[0]
    assert media in content, f"{media} is not documented for {response.status_code} of {template}"
    if media == "application/json":
        schema = {**content[media]["schema"], "components": document["components"]}
        jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)


def test_every_operation_of_the_document_is_called_above(document):
    operations = {(method, template) for template, item in document["paths"].items() for method in item}
    assert operations == {(method, template) for method, template, _, _ in CALLS}


def test_every_error_a_route_documents_has_an_example_of_its_own(document):
    for template, item in document["paths"].items():
        for method, operation in item.items():
            errors = {status: answer for status, answer in operation["responses"].items() if status[0] in "45"}
            examples = [answer["content"][JSON]["example"] for answer in errors.values()]
            if template.startswith("/v2"):  # the Open Inference Protocol's {"error": "message"}
                assert all(isinstance(example["error"], str) and example["error"] for example in examples), template
            else:
                assert all(example["error"]["code"] and example["error"]["message"] for example in examples), template
            assert len({repr(example) for example in examples}) == len(examples), f"{method} {template}"
